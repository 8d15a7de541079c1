/**
 * Tiled VAE decoding and encoding for large images: the latent grid is cut into equal, overlapping
 * tiles (equal so that one onnxruntime session serves them all), each tile is decoded (encoded),
 * and the tiles are blended with linear ramps across the overlaps that sum to one everywhere, so
 * no seam shows.
 */
import type { Tensor } from '../tensor.js';

export interface TileOptions {
  /** Tile size in latent pixels. */
  tile: number;
  /** Minimum overlap between neighbouring tiles, in latent pixels. */
  overlap: number;
}

/** Evenly spaced starts covering [0, size) with tiles of `tile` overlapping by at least `overlap`. */
export function tileStarts(size: number, tile: number, overlap: number): number[] {
  if (size <= tile) return [0];
  const count = Math.ceil((size - overlap) / (tile - overlap));
  return Array.from({ length: count }, (_, i) => Math.round((i * (size - tile)) / (count - 1)));
}

/** Weight of a pixel `d` pixels inside a tile edge that borders another tile across `ramp` pixels. */
function ramp1D(len: number, rampStart: number, rampEnd: number): Float32Array {
  const w = new Float32Array(len).fill(1);
  for (let i = 0; i < rampStart; i++) w[i] = (i + 0.5) / rampStart;
  for (let i = 0; i < rampEnd; i++) w[len - 1 - i] = Math.min(w[len - 1 - i]!, (i + 0.5) / rampEnd);
  return w;
}

/**
 * Runs `fn` on equal, overlapping tiles of `input` [B, C, H, W] and blends its outputs. Tiles are
 * planned on a grid of cells (latent pixels): one cell is `inCell` input pixels and `outCell`
 * output pixels a side (decoding: 1 and the VAE's scale; encoding: the other way round).
 */
async function tiledRun(input: Tensor, inCell: number, outCell: number, o: TileOptions, fn: (tile: Tensor) => Promise<Tensor>): Promise<Tensor> {
  const [b, c, ih, iw] = input.dims as [number, number, number, number];
  const h = ih / inCell;
  const w = iw / inCell;
  const th = Math.min(o.tile, h);
  const tw = Math.min(o.tile, w);
  const ys = tileStarts(h, th, o.overlap);
  const xs = tileStarts(w, tw, o.overlap);
  const H = h * outCell;
  const W = w * outCell;
  let channels = 0;
  let acc = new Float32Array(0);
  const weight = new Float32Array(H * W);
  const tih = th * inCell;
  const tiw = tw * inCell;
  for (const [yi, y0] of ys.entries()) {
    for (const [xi, x0] of xs.entries()) {
      const tile = new Float32Array(b * c * tih * tiw);
      for (let n = 0; n < b * c; n++) {
        for (let y = 0; y < tih; y++) {
          const src = (n * ih + y0 * inCell + y) * iw + x0 * inCell;
          tile.set(input.data.subarray(src, src + tiw), (n * tih + y) * tiw);
        }
      }
      const out = await fn({ data: tile, dims: [b, c, tih, tiw] });
      if (!channels) {
        channels = out.dims[1]!;
        acc = new Float32Array(b * channels * H * W);
      }
      // Ramps only where a neighbouring tile overlaps this one.
      const ov = (a: number | undefined, bEnd: number): number => (a === undefined ? 0 : Math.max(0, bEnd - a) * outCell);
      const wy = ramp1D(th * outCell, ov(y0, (ys[yi - 1] ?? -Infinity) + th), ov(ys[yi + 1], y0 + th));
      const wx = ramp1D(tw * outCell, ov(x0, (xs[xi - 1] ?? -Infinity) + tw), ov(xs[xi + 1], x0 + tw));
      const oh = th * outCell;
      const owd = tw * outCell;
      for (let y = 0; y < oh; y++) {
        for (let x = 0; x < owd; x++) {
          const wt = wy[y]! * wx[x]!;
          const p = (y0 * outCell + y) * W + x0 * outCell + x;
          weight[p]! += wt;
          for (let n = 0; n < b * channels; n++) acc[n * H * W + p]! += wt * out.data[(n * oh + y) * owd + x]!;
        }
      }
    }
  }
  for (let n = 0; n < b * channels; n++) for (let p = 0; p < H * W; p++) acc[n * H * W + p]! /= weight[p]!;
  return { data: acc, dims: [b, channels, H, W] };
}

/** Latents [B, C, h, w] → image [B, 3, h·scale, w·scale], decoded tile by tile (`o` in latent pixels). */
export function decodeTiled(latents: Tensor, scale: number, decode: (tile: Tensor) => Promise<Tensor>, o: TileOptions): Promise<Tensor> {
  return tiledRun(latents, 1, scale, o, decode);
}

export interface LatentDistribution {
  mean: Tensor;
  logvar: Tensor;
}

/**
 * Image [B, 3, H, W] → the encoder's latent distribution, encoded tile by tile (`o` in latent
 * pixels) with the mean and log-variance blended across the overlaps, so that images far larger
 * than one encoder pass can hold (img2img at 4096 px) are encoded in a tile's memory.
 */
export async function encodeTiled(image: Tensor, scale: number, encode: (tile: Tensor) => Promise<LatentDistribution>, o: TileOptions): Promise<LatentDistribution> {
  const both = await tiledRun(image, scale, 1, o, async (tile) => {
    const { mean, logvar } = await encode(tile);
    const [b, c, h, w] = mean.dims as [number, number, number, number];
    const out = new Float32Array(2 * mean.data.length);
    const plane = c * h * w;
    for (let n = 0; n < b; n++) {
      out.set(mean.data.subarray(n * plane, (n + 1) * plane), 2 * n * plane);
      out.set(logvar.data.subarray(n * plane, (n + 1) * plane), (2 * n + 1) * plane);
    }
    return { data: out, dims: [b, 2 * c, h, w] };
  });
  const [b, c2, h, w] = both.dims as [number, number, number, number];
  const plane = (c2 / 2) * h * w;
  const half = (k: 0 | 1): Tensor => {
    const data = new Float32Array(b * plane);
    for (let n = 0; n < b; n++) data.set(both.data.subarray((2 * n + k) * plane, (2 * n + k + 1) * plane), n * plane);
    return { data, dims: [b, c2 / 2, h, w] };
  };
  return { mean: half(0), logvar: half(1) };
}
