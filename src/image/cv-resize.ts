/**
 * OpenCV's `cv2.resize` for 8-bit images, reproduced exactly for the three interpolations
 * AUTOMATIC1111's ControlNet preprocessing uses:
 * - `area` when shrinking: whole-number ratios average each block (sum · 1/area, rounded half to
 *   even; 2x2 blocks (sum + 2) >> 2, as OpenCV's vector path); other ratios weigh each source
 *   pixel by its overlap with the destination cell, in float32, rounded half to even; when an
 *   axis grows, OpenCV's linear interpolation with INTER_AREA's offsets;
 * - `cubic`: Keys' kernel with a = −0.75 at half-pixel centres, weights in 11-bit fixed point,
 *   replicated borders;
 * - `nearest`: source index ⌊x · in/out⌋.
 * The vertical passes round as OpenCV's SSE2 build does (checked against its output): cubic in
 * float32 over whole groups of 8 values of a row and in fixed point over the rest; area's linear
 * case with its 16-bit vector arithmetic throughout.
 */
import type { Pixels } from './resample.js';

export type CvInterpolation = 'area' | 'cubic' | 'nearest';

const f = Math.fround;
const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS;
/** Width of OpenCV's SSE2 vertical pass (8 int16 lanes): it rounds differently from the scalar tail. */
const VECTOR_LANES = 8;

/** cvRound / saturate_cast<uchar>(float): round half to even, clamp to 0..255. */
function saturate(v: number): number {
  const r = Math.round(v);
  const even = r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
  return Math.min(255, Math.max(0, even));
}

export function cvResize(src: Pixels, width: number, height: number, interpolation: CvInterpolation): Pixels {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`resize: target size must be positive integers; got ${width}x${height}`);
  }
  if (width === src.width && height === src.height) return { ...src, data: src.data.slice() };
  if (interpolation === 'nearest') return nearest(src, width, height);
  if (interpolation === 'area') {
    const sx = src.width / width;
    const sy = src.height / height;
    if (sx >= 1 && sy >= 1) return Number.isInteger(sx) && Number.isInteger(sy) ? areaFast(src, sx, sy) : area(src, width, height);
  }
  return interpolation === 'area' ? areaLinear(src, width, height) : cubic(src, width, height);
}

function nearest(src: Pixels, width: number, height: number): Pixels {
  const { width: sw, height: sh, channels: cn, data } = src;
  const out = new Uint8Array(width * height * cn);
  const fx = sw / width;
  const fy = sh / height;
  for (let y = 0; y < height; y++) {
    const syy = Math.min(Math.floor(y * fy), sh - 1);
    for (let x = 0; x < width; x++) {
      const sxx = Math.min(Math.floor(x * fx), sw - 1);
      for (let c = 0; c < cn; c++) out[(y * width + x) * cn + c] = data[(syy * sw + sxx) * cn + c]!;
    }
  }
  return { width, height, channels: cn, data: out };
}

/** Whole-number ratios: the mean of each sx x sy block. */
function areaFast(src: Pixels, sx: number, sy: number): Pixels {
  const { width: sw, channels: cn, data } = src;
  const width = src.width / sx;
  const height = src.height / sy;
  const out = new Uint8Array(width * height * cn);
  const blocks = sx * sy;
  const scale = f(1 / blocks);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < cn; c++) {
        let sum = 0;
        for (let j = 0; j < sy; j++) for (let i = 0; i < sx; i++) sum += data[((y * sy + j) * sw + x * sx + i) * cn + c]!;
        out[(y * width + x) * cn + c] = blocks === 4 ? (sum + 2) >> 2 : saturate(f(sum * scale));
      }
    }
  }
  return { width, height, channels: cn, data: out };
}

interface AreaWeight {
  dst: number;
  src: number;
  alpha: number;
}

/** OpenCV's computeResizeAreaTab: each source pixel's share of a destination cell along one axis. */
function areaTable(ssize: number, dsize: number): AreaWeight[] {
  const scale = ssize / dsize;
  const tab: AreaWeight[] = [];
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale;
    const fsx2 = fsx1 + scale;
    const cellWidth = Math.min(scale, ssize - fsx1);
    const sx2 = Math.min(Math.floor(fsx2), ssize - 1);
    const sx1 = Math.min(Math.ceil(fsx1), sx2);
    if (sx1 - fsx1 > 1e-3) tab.push({ dst: dx, src: sx1 - 1, alpha: f((sx1 - fsx1) / cellWidth) });
    for (let s = sx1; s < sx2; s++) tab.push({ dst: dx, src: s, alpha: f(1 / cellWidth) });
    if (fsx2 - sx2 > 1e-3) tab.push({ dst: dx, src: sx2, alpha: f(Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth) });
  }
  return tab;
}

/** Other ratios: each row resized into a float buffer, rows weighed into the destination row, float32 throughout. */
function area(src: Pixels, width: number, height: number): Pixels {
  const { width: sw, channels: cn, data } = src;
  const xtab = areaTable(sw, width);
  const ytab = areaTable(src.height, height);
  const out = new Uint8Array(width * height * cn);
  const buf = new Float32Array(width * cn);
  const sum = new Float32Array(width * cn);
  let prev = -1;
  const flush = (dy: number): void => {
    for (let k = 0; k < width * cn; k++) out[dy * width * cn + k] = saturate(sum[k]!);
  };
  for (const { dst: dy, src: row, alpha: beta } of ytab) {
    buf.fill(0);
    for (const { dst, src: s, alpha } of xtab) {
      for (let c = 0; c < cn; c++) buf[dst * cn + c] = f(buf[dst * cn + c]! + f(data[(row * sw + s) * cn + c]! * alpha));
    }
    if (dy !== prev) {
      if (prev >= 0) flush(prev);
      for (let k = 0; k < width * cn; k++) sum[k] = f(beta * buf[k]!);
      prev = dy;
    } else {
      for (let k = 0; k < width * cn; k++) sum[k] = f(sum[k]! + f(beta * buf[k]!));
    }
  }
  flush(prev);
  return { width, height, channels: cn, data: out };
}

/** interpolateCubic: Keys' weights for the four taps around a fractional offset, in float32. */
function cubicWeights(x: number): [number, number, number, number] {
  const A = -0.75;
  const c0 = f(f(f(f(f(f(A * f(x + 1)) - 5 * A) * f(x + 1)) + 8 * A) * f(x + 1)) - 4 * A);
  const c1 = f(f(f(f(f(A + 2) * x) - (A + 3)) * x) * x + 1);
  const c2 = f(f(f(f(f(A + 2) * f(1 - x)) - (A + 3)) * f(1 - x)) * f(1 - x) + 1);
  return [c0, c1, c2, f(f(f(1 - c0) - c1) - c2)];
}

/** Per output index: the first tap's source index and the four fixed-point weights. */
function cubicTable(ssize: number, dsize: number): { first: Int32Array; weights: Int32Array } {
  const scale = ssize / dsize;
  const first = new Int32Array(dsize);
  const weights = new Int32Array(dsize * 4);
  for (let d = 0; d < dsize; d++) {
    const fx = f((d + 0.5) * scale - 0.5);
    const s = Math.floor(fx);
    first[d] = s - 1;
    // saturate_cast<short>(w · 2048): round half to even.
    cubicWeights(f(fx - s)).forEach((w, k) => (weights[d * 4 + k] = saturate16(f(w * COEF_SCALE))));
  }
  return { first, weights };
}

function saturate16(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function cubic(src: Pixels, width: number, height: number): Pixels {
  const { width: sw, height: sh, channels: cn, data } = src;
  const xt = cubicTable(sw, width);
  const yt = cubicTable(sh, height);
  const clamp = (v: number, n: number): number => Math.min(n - 1, Math.max(0, v));
  // Horizontal pass for every source row (int sums, unshifted), then the vertical one.
  const rows = new Int32Array(sh * width * cn);
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < cn; c++) {
        let v = 0;
        for (let k = 0; k < 4; k++) v += data[(y * sw + clamp(xt.first[x]! + k, sw)) * cn + c]! * xt.weights[x * 4 + k]!;
        rows[(y * width + x) * cn + c] = v;
      }
    }
  }
  const out = new Uint8Array(width * height * cn);
  const shift = 2 * COEF_BITS;
  const n = width * cn;
  const vector = n - (n % VECTOR_LANES);
  for (let y = 0; y < height; y++) {
    const src4 = [0, 1, 2, 3].map((k) => clamp(yt.first[y]! + k, sh) * n);
    const b = [0, 1, 2, 3].map((k) => yt.weights[y * 4 + k]!);
    const bf = b.map((v) => f(v / (1 << shift)));
    for (let i = 0; i < n; i++) {
      const s = src4.map((r) => rows[r + i]!);
      if (i < vector) {
        // OpenCV's vector path: float32 multiply-adds from the last tap, rounded half to even.
        let acc = f(s[3]! * bf[3]!);
        for (let k = 2; k >= 0; k--) acc = f(f(s[k]! * bf[k]!) + acc);
        out[y * n + i] = saturate(acc);
      } else {
        const v = s[0]! * b[0]! + s[1]! * b[1]! + s[2]! * b[2]! + s[3]! * b[3]!;
        out[y * n + i] = Math.min(255, Math.max(0, Math.floor((v + (1 << (shift - 1))) / (1 << shift))));
      }
    }
  }
  return { width, height, channels: cn, data: out };
}

/** INTER_AREA where an axis grows: two-tap linear weights at OpenCV's area offsets, 11-bit fixed point. */
function linearTable(ssize: number, dsize: number): { first: Int32Array; weights: Int32Array } {
  const scale = ssize / dsize;
  const inv = dsize / ssize;
  const first = new Int32Array(dsize);
  const weights = new Int32Array(dsize * 2);
  for (let d = 0; d < dsize; d++) {
    let s = Math.floor(d * scale);
    let fx = f(d + 1 - (s + 1) * inv);
    fx = fx <= 0 ? 0 : f(fx - Math.floor(fx));
    if (s >= ssize - 1) {
      fx = 0;
      s = ssize - 1;
    }
    first[d] = s;
    weights[d * 2] = saturate16(f(f(1 - fx) * COEF_SCALE));
    weights[d * 2 + 1] = saturate16(f(fx * COEF_SCALE));
  }
  return { first, weights };
}

/** Signed 16-bit saturation, as OpenCV's packs and saturating adds do. */
const sat16 = (v: number): number => Math.min(32767, Math.max(-32768, v));

function areaLinear(src: Pixels, width: number, height: number): Pixels {
  const { width: sw, height: sh, channels: cn, data } = src;
  const xt = linearTable(sw, width);
  const yt = linearTable(sh, height);
  const n = width * cn;
  const rows = new Int32Array(sh * n);
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < width; x++) {
      const s = xt.first[x]!;
      for (let c = 0; c < cn; c++) {
        const a = data[(y * sw + s) * cn + c]!;
        // The last source pixel has no right neighbour: OpenCV takes it whole.
        rows[y * n + x * cn + c] = s + 1 < sw ? a * xt.weights[x * 2]! + data[(y * sw + s + 1) * cn + c]! * xt.weights[x * 2 + 1]! : a * COEF_SCALE;
      }
    }
  }
  const out = new Uint8Array(width * height * cn);
  for (let y = 0; y < height; y++) {
    const r0 = yt.first[y]! * n;
    const r1 = Math.min(yt.first[y]! + 1, sh - 1) * n;
    const b0 = yt.weights[y * 2]!;
    const b1 = yt.weights[y * 2 + 1]!;
    // OpenCV's vector arithmetic, which covers whole rows here: sums >> 4 in 16 bits, high halves of the products, (v + 2) >> 2.
    for (let i = 0; i < n; i++) {
      const v = sat16(((sat16(rows[r0 + i]! >> 4) * b0) >> 16) + ((sat16(rows[r1 + i]! >> 4) * b1) >> 16));
      out[y * n + i] = Math.min(255, Math.max(0, (v + 2) >> 2));
    }
  }
  return { width, height, channels: cn, data: out };
}
