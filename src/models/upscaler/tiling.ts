/**
 * Tiled upscaling: the image is cut into equal, overlapping tiles (equal, so one onnxruntime
 * session serves them all), each tile is upscaled, and each output pixel is taken from the tile
 * in which it lies farthest from a cut edge (the overlaps are split down the middle). Every kept
 * pixel thus sees at least overlap / 2 input pixels of real context on each side, so the result
 * equals the untiled one wherever the network's receptive field fits in that margin, and seams
 * do not show elsewhere. Sizes the model needs in multiples (a pixel unshuffle) are padded by
 * reflection and cropped off again, as spandrel does.
 */
import { tileStarts } from '../../image/tiles.js';
import { UserError } from '../../errors.js';

export interface TileOptions {
  /** Largest tile side in input pixels; 0 upscales the whole image at once. */
  tile: number;
  /** Least overlap between neighbouring tiles, in input pixels. */
  overlap: number;
}

/** One axis: the tile length, where each tile starts, and the part [from, to) of the axis each tile's output provides. */
export interface AxisPlan {
  length: number;
  starts: number[];
  keep: [number, number][];
}

/** The tiles along one axis of `size` pixels (a multiple of `multiple`). */
export function planAxis(size: number, o: TileOptions, multiple: number): AxisPlan {
  if (o.tile <= 0 || size <= o.tile) return { length: size, starts: [0], keep: [[0, size]] };
  if (o.tile <= o.overlap + multiple) throw new UserError(`tile ${o.tile} must be larger than the overlap ${o.overlap} (+${multiple})`);
  // As few tiles as the maximum size allows, then the shortest equal length that still covers the axis.
  const count = Math.ceil((size - o.overlap) / (o.tile - o.overlap));
  const length = Math.min(size, Math.ceil(Math.ceil((size + (count - 1) * o.overlap) / count) / multiple) * multiple);
  const starts = tileStarts(size, length, o.overlap, multiple);
  const cuts = starts.slice(1).map((s, i) => Math.floor((s + starts[i]! + length) / 2));
  const keep = starts.map((_, i): [number, number] => [i === 0 ? 0 : cuts[i - 1]!, i === starts.length - 1 ? size : cuts[i]!]);
  return { length, starts, keep };
}

/** CHW planes padded on the bottom and right to multiples of `multiple` by reflection (numpy / torch 'reflect'). */
export function padReflect(planes: Float32Array, channels: number, h: number, w: number, multiple: number): { data: Float32Array; height: number; width: number } {
  const H = Math.ceil(h / multiple) * multiple;
  const W = Math.ceil(w / multiple) * multiple;
  if (H === h && W === w) return { data: planes, height: h, width: w };
  if (H - h >= h || W - w >= w) throw new UserError(`an image of ${w}x${h} is too small for this model (it needs at least ${multiple}x${multiple} pixels)`);
  const reflect = (i: number, n: number): number => (i < n ? i : 2 * (n - 1) - i);
  const data = new Float32Array(channels * H * W);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < H; y++) {
      const sy = reflect(y, h);
      for (let x = 0; x < W; x++) data[(c * H + y) * W + x] = planes[(c * h + sy) * w + reflect(x, w)]!;
    }
  }
  return { data, height: H, width: W };
}

/**
 * Upscales CHW planes [channels, h, w] (h, w multiples of `multiple`) by `scale` through
 * `run`, one tile at a time; returns [channels, h·scale, w·scale].
 */
export async function upscaleTiled(
  planes: Float32Array,
  channels: number,
  h: number,
  w: number,
  scale: number,
  multiple: number,
  o: TileOptions,
  run: (tile: Float32Array, th: number, tw: number) => Promise<Float32Array>,
  onTile?: (done: number, total: number) => void,
): Promise<Float32Array> {
  const ys = planAxis(h, o, multiple);
  const xs = planAxis(w, o, multiple);
  const [th, tw] = [ys.length, xs.length];
  const H = h * scale;
  const W = w * scale;
  const out = new Float32Array(channels * H * W);
  const total = ys.starts.length * xs.starts.length;
  let done = 0;
  for (const [yi, y0] of ys.starts.entries()) {
    for (const [xi, x0] of xs.starts.entries()) {
      const tile = new Float32Array(channels * th * tw);
      for (let c = 0; c < channels; c++) {
        for (let y = 0; y < th; y++) {
          const src = (c * h + y0 + y) * w + x0;
          tile.set(planes.subarray(src, src + tw), (c * th + y) * tw);
        }
      }
      const up = await run(tile, th, tw);
      const [ky0, ky1] = ys.keep[yi]!;
      const [kx0, kx1] = xs.keep[xi]!;
      const rowLen = (kx1 - kx0) * scale;
      for (let c = 0; c < channels; c++) {
        for (let y = ky0 * scale; y < ky1 * scale; y++) {
          const src = (c * th * scale + y - y0 * scale) * tw * scale + (kx0 - x0) * scale;
          out.set(up.subarray(src, src + rowLen), (c * H + y) * W + kx0 * scale);
        }
      }
      onTile?.(++done, total);
    }
  }
  return out;
}
