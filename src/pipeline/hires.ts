/**
 * AUTOMATIC1111's hires fix: a first pass at the base size, an upscale, and a second pass as
 * image-to-image at the target size. This module checks the options and upscales latents
 * ("Latent": torch bilinear, align_corners=False, no antialias; "Latent (nearest)": torch nearest);
 * the image upscalers (Lanczos, Nearest, a model) are upscale-image.ts's.
 */
import type { AttentionOptions } from '../attention/options.js';
import { Upscaler } from '../models/upscaler/upscaler.js';
import type { TileOptions } from '../models/upscaler/tiling.js';
import type { Tensor } from '../tensor.js';
import { UserError } from '../errors.js';
import type { DeepCacheOptions } from './deepcache.js';

export const HIRES_UPSCALERS = ['latent', 'latent-nearest', 'lanczos', 'nearest'] as const;
export type HiresUpscaler = (typeof HIRES_UPSCALERS)[number];

/** A1111's names, for the PNG parameters. */
export const A1111_UPSCALER_NAMES: Record<HiresUpscaler, string> = {
  latent: 'Latent',
  'latent-nearest': 'Latent (nearest)',
  lanczos: 'Lanczos',
  nearest: 'Nearest',
};

/** The name the PNG parameters give an upscaler: A1111's for the built-in ones, else the model's. */
export function hiresUpscalerLabel(u: HiresUpscaler | Upscaler | string): string {
  if (u instanceof Upscaler) return u.name;
  return (HIRES_UPSCALERS as readonly string[]).includes(u) ? A1111_UPSCALER_NAMES[u as HiresUpscaler] : u;
}

export interface HiresOptions {
  /** Target size = base size × scale (A1111's hr_scale). */
  scale: number;
  /** Second-pass steps before the strength cut (default: the first pass's steps). */
  steps?: number;
  /** The second pass's img2img strength, 0 < denoise ≤ 1. */
  denoise: number;
  /**
   * How the first pass is enlarged: in latent space, or decoded and enlarged as an image (Lanczos,
   * Nearest, or an upscaler model from loadUpscaler: the model, then Lanczos to the size) and
   * encoded again, as A1111 does.
   */
  upscaler: HiresUpscaler | Upscaler;
  /** Tiles of an upscaler model (default: DEFAULT_TILE). */
  tile?: Partial<TileOptions>;
  /** Attention of the second pass (default: the first pass's). */
  attention?: AttentionOptions;
  /** DeepCache in the second pass (default: the first pass's; false: off). */
  deepcache?: DeepCacheOptions | false;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** The target size; a scale that misses the size grid fails with the nearest one that fits. */
export function hiresSize(width: number, height: number, scale: number, multiple: number): { width: number; height: number } {
  if (!Number.isFinite(scale) || scale < 1 || scale > 8) throw new UserError(`hires scale must be a number from 1 to 8; got ${scale}`);
  const w = width * scale;
  const h = height * scale;
  if (Number.isInteger(w) && Number.isInteger(h) && w % multiple === 0 && h % multiple === 0) return { width: w, height: h };
  // Valid scales are the multiples of 1/g, g = gcd(width, height) / multiple.
  const g = gcd(width / multiple, height / multiple);
  const near = Math.max(g, Math.round(scale * g)) / g;
  throw new UserError(
    `hires scale ${scale} gives ${+w.toFixed(2)}x${+h.toFixed(2)} px, but sizes must be multiples of ${multiple}; the nearest valid scale is ${+near.toFixed(4)} (${width * near}x${height * near})`,
  );
}

/** PyTorch's source coordinate for align_corners=False with an explicit output size (float32 scale). */
function source(dst: number, inSize: number, outSize: number): number {
  const scale = Math.fround(inSize / outSize);
  return Math.max(0, Math.fround(Math.fround(scale * (dst + 0.5)) - 0.5));
}

/** F.interpolate(x, size=(height, width), mode='bilinear' | 'nearest') on [B, C, h, w]. */
export function upscaleLatents(x: Tensor, height: number, width: number, mode: 'bilinear' | 'nearest'): Tensor {
  const [b, c, h, w] = x.dims as [number, number, number, number];
  const out = new Float32Array(b * c * height * width);
  const axis = (n: number, inSize: number): { i0: Int32Array; i1: Int32Array; l: Float32Array } => {
    const i0 = new Int32Array(n);
    const i1 = new Int32Array(n);
    const l = new Float32Array(n);
    for (let d = 0; d < n; d++) {
      if (mode === 'nearest') {
        i0[d] = i1[d] = Math.min(Math.floor(Math.fround(d * Math.fround(inSize / n))), inSize - 1);
        continue;
      }
      const s = source(d, inSize, n);
      i0[d] = Math.min(Math.floor(s), inSize - 1);
      i1[d] = Math.min(i0[d]! + 1, inSize - 1);
      l[d] = s - i0[d]!;
    }
    return { i0, i1, l };
  };
  const ys = axis(height, h);
  const xs = axis(width, w);
  for (let p = 0; p < b * c; p++) {
    const src = x.data.subarray(p * h * w, (p + 1) * h * w);
    for (let y = 0; y < height; y++) {
      const r0 = ys.i0[y]! * w;
      const r1 = ys.i1[y]! * w;
      const ly = ys.l[y]!;
      for (let xx = 0; xx < width; xx++) {
        const lx = xs.l[xx]!;
        const a = src[r0 + xs.i0[xx]!]! * (1 - lx) + src[r0 + xs.i1[xx]!]! * lx;
        const bb = src[r1 + xs.i0[xx]!]! * (1 - lx) + src[r1 + xs.i1[xx]!]! * lx;
        out[p * height * width + y * width + xx] = a * (1 - ly) + bb * ly;
      }
    }
  }
  return { data: out, dims: [b, c, height, width] };
}
