/**
 * Tiled VAE decoding for large images: the latent is cut into equal, overlapping tiles (equal
 * so that one onnxruntime session serves them all), each tile is decoded, and the tiles are
 * blended with linear ramps across the overlaps that sum to one everywhere, so no seam shows.
 */
import { tileStarts } from '../image/tiles.js';
import type { Tensor } from '../tensor.js';

export interface TileOptions {
  /** Tile size in latent pixels. */
  tile: number;
  /** Minimum overlap between neighbouring tiles, in latent pixels. */
  overlap: number;
}

/** Weight of a pixel `d` pixels inside a tile edge that borders another tile across `ramp` pixels. */
function ramp1D(len: number, rampStart: number, rampEnd: number): Float32Array {
  const w = new Float32Array(len).fill(1);
  for (let i = 0; i < rampStart; i++) w[i] = (i + 0.5) / rampStart;
  for (let i = 0; i < rampEnd; i++) w[len - 1 - i] = Math.min(w[len - 1 - i]!, (i + 0.5) / rampEnd);
  return w;
}

export async function decodeTiled(latents: Tensor, scale: number, decode: (tile: Tensor) => Promise<Tensor>, o: TileOptions): Promise<Tensor> {
  const [b, c, h, w] = latents.dims as [number, number, number, number];
  const th = Math.min(o.tile, h);
  const tw = Math.min(o.tile, w);
  const ys = tileStarts(h, th, o.overlap);
  const xs = tileStarts(w, tw, o.overlap);
  const H = h * scale;
  const W = w * scale;
  let channels = 0;
  let acc = new Float32Array(0);
  const weight = new Float32Array(H * W);
  for (const [yi, y0] of ys.entries()) {
    for (const [xi, x0] of xs.entries()) {
      const tile = new Float32Array(b * c * th * tw);
      for (let n = 0; n < b * c; n++) {
        for (let y = 0; y < th; y++) {
          const src = (n * h + y0 + y) * w + x0;
          tile.set(latents.data.subarray(src, src + tw), (n * th + y) * tw);
        }
      }
      const out = await decode({ data: tile, dims: [b, c, th, tw] });
      if (!channels) {
        channels = out.dims[1]!;
        acc = new Float32Array(b * channels * H * W);
      }
      // Ramps only where a neighbouring tile overlaps this one.
      const ov = (a: number | undefined, bEnd: number): number => (a === undefined ? 0 : Math.max(0, bEnd - a) * scale);
      const wy = ramp1D(th * scale, ov(y0, (ys[yi - 1] ?? -Infinity) + th), ov(ys[yi + 1], y0 + th));
      const wx = ramp1D(tw * scale, ov(x0, (xs[xi - 1] ?? -Infinity) + tw), ov(xs[xi + 1], x0 + tw));
      const oh = th * scale;
      const owd = tw * scale;
      for (let y = 0; y < oh; y++) {
        for (let x = 0; x < owd; x++) {
          const wt = wy[y]! * wx[x]!;
          const p = (y0 * scale + y) * W + x0 * scale + x;
          weight[p]! += wt;
          for (let n = 0; n < b * channels; n++) acc[n * H * W + p]! += wt * out.data[(n * oh + y) * owd + x]!;
        }
      }
    }
  }
  for (let n = 0; n < b * channels; n++) for (let p = 0; p < H * W; p++) acc[n * H * W + p]! /= weight[p]!;
  return { data: acc, dims: [b, channels, H, W] };
}
