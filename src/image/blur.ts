/**
 * The two blurs AUTOMATIC1111's inpainting uses: OpenCV's GaussianBlur for the mask (kernel
 * 2·⌊2.5σ + 0.5⌋ + 1, reflect-101 borders) and Pillow's GaussianBlur (three extended box blurs)
 * for the "fill" mode. Both on float planes; callers round to 8 bits where the originals do.
 */

/** Reflect-101 index: …c b | a b c … */
function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let j = ((i % period) + period) % period;
  if (j >= n) j = period - j;
  return j;
}

function convolve(plane: Float32Array, width: number, height: number, kernel: Float64Array, horizontal: boolean): Float32Array {
  const out = new Float32Array(plane.length);
  const r = (kernel.length - 1) / 2;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let s = 0;
      for (let k = -r; k <= r; k++) {
        const idx = horizontal ? y * width + reflect101(x + k, width) : reflect101(y + k, height) * width + x;
        s += plane[idx]! * kernel[k + r]!;
      }
      out[y * width + x] = s;
    }
  }
  return out;
}

/** cv2.getGaussianKernel(ksize, sigma). */
function gaussianKernel(sigma: number): Float64Array {
  const size = 2 * Math.floor(2.5 * sigma + 0.5) + 1;
  const k = new Float64Array(size);
  const c = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) sum += k[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
  return k.map((v) => v / sum);
}

/**
 * A1111's mask blur of an 8-bit plane: cv2.GaussianBlur along x, then along y, each rounded
 * back to 8 bits. `sigma` 0 leaves the plane as it is.
 */
export function maskBlur(plane: Uint8Array, width: number, height: number, sigma: number): Uint8Array {
  if (sigma <= 0) return plane.slice();
  const kernel = gaussianKernel(sigma);
  const round8 = (p: Float32Array): Float32Array => p.map((v) => Math.min(255, Math.max(0, Math.round(v))));
  const x = round8(convolve(Float32Array.from(plane), width, height, kernel, true));
  return Uint8Array.from(round8(convolve(x, width, height, kernel, false)));
}

/** One extended box blur of fractional radius `r` along rows or columns, edges extended. */
function boxBlur(plane: Float32Array, width: number, height: number, r: number, horizontal: boolean): Float32Array {
  const out = new Float32Array(plane.length);
  const ri = Math.floor(r);
  const edge = r - ri;
  const norm = 2 * r + 1;
  const n = horizontal ? width : height;
  const lines = horizontal ? height : width;
  for (let l = 0; l < lines; l++) {
    const at = (i: number): number => {
      const j = Math.min(n - 1, Math.max(0, i));
      return plane[horizontal ? l * width + j : j * width + l]!;
    };
    // Running sum of the window [i − ri, i + ri]; the two pixels just outside weigh `edge`.
    let s = 0;
    for (let k = -ri; k <= ri; k++) s += at(k);
    for (let i = 0; i < n; i++) {
      out[horizontal ? l * width + i : i * width + l] = (s + (at(i - ri - 1) + at(i + ri + 1)) * edge) / norm;
      s += at(i + ri + 1) - at(i - ri);
    }
  }
  return out;
}

/** Pillow's ImageFilter.GaussianBlur(radius): three extended box blurs per axis of matching variance. */
export function pillowGaussianBlur(plane: Float32Array, width: number, height: number, radius: number): Float32Array {
  if (radius <= 0) return plane.slice();
  const passes = 3;
  const sigma2 = (radius * radius) / passes;
  const L = Math.sqrt(12 * sigma2 + 1);
  const l = Math.floor((L - 1) / 2);
  const a = ((2 * l + 1) * (l * (l + 1) - 3 * sigma2)) / (6 * (sigma2 - (l + 1) * (l + 1)));
  const r = l + a;
  let p = plane;
  for (let i = 0; i < passes; i++) p = boxBlur(p, width, height, r, true);
  for (let i = 0; i < passes; i++) p = boxBlur(p, width, height, r, false);
  return p;
}
