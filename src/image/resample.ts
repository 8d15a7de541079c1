/**
 * Pillow's `Image.resize` for 8-bit images (Lanczos-3 and bicubic), reproduced exactly: separable
 * passes (horizontal first, only where the size changes), the filter widened by the scale when
 * shrinking, weights normalised then rounded to 22-bit fixed point, and 8-bit clipping between
 * the passes. Works for any number of interleaved channels, shrinking and enlarging alike.
 */

export type ResampleFilter = 'lanczos' | 'bicubic';

/** 8-bit pixels, row-major, `channels` values per pixel (RGB = 3, a mask = 1). */
export interface Pixels {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

const PRECISION_BITS = 32 - 8 - 2;

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const FILTERS: Record<ResampleFilter, { support: number; fn: (x: number) => number }> = {
  lanczos: { support: 3, fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  bicubic: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      const ax = Math.abs(x);
      if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
      if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
      return 0;
    },
  },
};

interface Coefficients {
  ksize: number;
  /** Per output pixel: first input index and count. */
  bounds: Int32Array;
  /** Fixed-point weights, ksize per output pixel. */
  weights: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis. */
function coefficients(inSize: number, outSize: number, filter: ResampleFilter): Coefficients {
  const { support: baseSupport, fn } = FILTERS[filter];
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = baseSupport * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = fn((x + xmin - center + 0.5) * ss);
      ww += k[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

function clip8(v: number): number {
  if (v >= 1 << (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

/** One axis; `horizontal` resamples along rows. Integer sums stay below 2^53, so doubles are exact. */
function pass(src: Pixels, outSize: number, horizontal: boolean, filter: ResampleFilter): Pixels {
  const { width, height, channels: ch, data } = src;
  const inSize = horizontal ? width : height;
  const { ksize, bounds, weights } = coefficients(inSize, outSize, filter);
  const ow = horizontal ? outSize : width;
  const oh = horizontal ? height : outSize;
  const out = new Uint8Array(ow * oh * ch);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const xmin = bounds[o * 2]!;
      const n = bounds[o * 2 + 1]!;
      for (let c = 0; c < ch; c++) {
        let sum = half;
        for (let i = 0; i < n; i++) {
          const idx = horizontal ? (y * width + xmin + i) * ch + c : ((xmin + i) * width + x) * ch + c;
          sum += data[idx]! * weights[o * ksize + i]!;
        }
        out[(y * ow + x) * ch + c] = clip8(sum);
      }
    }
  }
  return { width: ow, height: oh, channels: ch, data: out };
}

/** `image.resize((width, height), filter)` as Pillow computes it. */
export function resample(src: Pixels, width: number, height: number, filter: ResampleFilter = 'lanczos'): Pixels {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`resample: target size must be positive integers; got ${width}x${height}`);
  }
  let img = src;
  if (width !== img.width) img = pass(img, width, true, filter);
  if (height !== img.height) img = pass(img, height, false, filter);
  return img === src ? { ...src, data: src.data.slice() } : img;
}

/**
 * Pillow's `Image.resize(NEAREST)` (ImagingScaleAffine): output pixel x takes input pixel
 * ⌊xo⌋, xo starting at half a step (in / out) and growing by a step per pixel, summed in float64
 * as Pillow sums it.
 */
export function resampleNearest(src: Pixels, width: number, height: number): Pixels {
  const { channels: ch } = src;
  const index = (inSize: number, outSize: number): Int32Array => {
    const step = inSize / outSize;
    const out = new Int32Array(outSize);
    let o = step * 0.5;
    for (let i = 0; i < outSize; i++, o += step) out[i] = Math.min(inSize - 1, Math.trunc(o));
    return out;
  };
  const xs = index(src.width, width);
  const ys = index(src.height, height);
  const data = new Uint8Array(width * height * ch);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = (ys[y]! * src.width + xs[x]!) * ch;
      data.set(src.data.subarray(s, s + ch), (y * width + x) * ch);
    }
  }
  return { width, height, channels: ch, data };
}
