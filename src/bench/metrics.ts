/**
 * Image fidelity metrics for the benchmark reports: how far an accelerated (ToDo) image is from the
 * dense-attention image of the same seed (MSE, PSNR, SSIM), and how much fine detail an image keeps
 * (HPF). Inputs are 8-bit RGB images; MSE, PSNR and SSIM work on values scaled to [0, 1] so they
 * read the same as scikit-image's on `img_as_float` images.
 */
import type { RgbImage } from '../io/png.js';

function checkImage(img: RgbImage, name: string): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width <= 0 || img.height <= 0) {
    throw new Error(`${name}: width and height must be positive integers, got ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new Error(`${name}: ${img.width}x${img.height} RGB needs ${img.width * img.height * 3} bytes, got ${img.data.length}`);
  }
}

function checkPair(a: RgbImage, b: RgbImage): void {
  checkImage(a, 'first image');
  checkImage(b, 'second image');
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(`images differ in size: ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  }
}

/** Mean squared error over all pixels and channels, on values scaled to [0, 1]. */
export function mse(a: RgbImage, b: RgbImage): number {
  checkPair(a, b);
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = a.data[i]! - b.data[i]!;
    sum += d * d;
  }
  return sum / (255 * 255) / a.data.length;
}

/** Peak signal-to-noise ratio in dB for a peak of 1 (values in [0, 1]); Infinity for identical images. */
export function psnr(a: RgbImage, b: RgbImage): number {
  const e = mse(a, b);
  return e === 0 ? Infinity : -10 * Math.log10(e);
}

// SSIM constants of Wang et al. 2004, as scikit-image uses them with gaussian_weights=True.
const SIGMA = 1.5;
const TRUNCATE = 3.5;
/** Filter radius as scipy.ndimage computes it: int(truncate * sigma + 0.5) = 5, an 11-tap window. */
const RADIUS = Math.floor(TRUNCATE * SIGMA + 0.5);
const WIN = 2 * RADIUS + 1;
const C1 = (0.01 * 1) ** 2; // (K1 * data_range)^2 with data_range 1
const C2 = (0.03 * 1) ** 2; // (K2 * data_range)^2

/** scipy.ndimage's 1-D Gaussian weights: exp(-x^2 / 2 sigma^2) for |x| <= radius, normalised to sum 1. */
const WEIGHTS: Float64Array = (() => {
  const w = new Float64Array(WIN);
  for (let k = -RADIUS; k <= RADIUS; k++) w[k + RADIUS] = Math.exp((-0.5 * k * k) / (SIGMA * SIGMA));
  const sum = w.reduce((s, v) => s + v, 0);
  return w.map((v) => v / sum);
})();

/**
 * Gaussian filter of a w x h plane evaluated only where the whole window lies inside the plane
 * (output (h - 2r) x (w - 2r)). scikit-image filters the full plane with mode 'reflect' and then
 * crops r pixels from each border before averaging; the cropped values never reach the reflected
 * padding, so this "valid" filter gives the same numbers without it.
 */
function gaussianValid(plane: Float64Array, w: number, h: number): Float64Array {
  const ow = w - 2 * RADIUS;
  const oh = h - 2 * RADIUS;
  const rows = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let k = 0; k < WIN; k++) s += WEIGHTS[k]! * plane[y * w + x + k]!;
      rows[y * ow + x] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let k = 0; k < WIN; k++) s += WEIGHTS[k]! * rows[(y + k) * ow + x]!;
      out[y * ow + x] = s;
    }
  }
  return out;
}

/** Mean SSIM of one channel, over the pixels at least RADIUS from every border. */
function ssimChannel(a: RgbImage, b: RgbImage, c: number): number {
  const { width: w, height: h } = a;
  const n = w * h;
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = a.data[i * 3 + c]! / 255;
    y[i] = b.data[i * 3 + c]! / 255;
  }
  const ux = gaussianValid(x, w, h);
  const uy = gaussianValid(y, w, h);
  const uxx = gaussianValid(x.map((v) => v * v), w, h);
  const uyy = gaussianValid(y.map((v) => v * v), w, h);
  const uxy = gaussianValid(x.map((v, i) => v * y[i]!), w, h);
  let sum = 0;
  for (let i = 0; i < ux.length; i++) {
    const mx = ux[i]!;
    const my = uy[i]!;
    // Population (weighted) variances and covariance: use_sample_covariance=False.
    const vx = uxx[i]! - mx * mx;
    const vy = uyy[i]! - my * my;
    const vxy = uxy[i]! - mx * my;
    sum += ((2 * mx * my + C1) * (2 * vxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
  }
  return sum / ux.length;
}

/**
 * Mean structural similarity (Wang et al. 2004), as scikit-image's
 * `structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
 * data_range=1, channel_axis=-1)` computes it on the images scaled to [0, 1]: Gaussian-weighted
 * local statistics (sigma 1.5, truncate 3.5, an 11x11 window), K1 = 0.01, K2 = 0.03, the SSIM map
 * averaged over the region 5 pixels in from each border, then averaged over R, G and B.
 * Like scikit-image, it needs both sides to be at least the window size (11).
 */
export function ssim(a: RgbImage, b: RgbImage): number {
  checkPair(a, b);
  if (a.width < WIN || a.height < WIN) {
    throw new Error(`ssim needs images of at least ${WIN}x${WIN} pixels (the Gaussian window), got ${a.width}x${a.height}`);
  }
  return (ssimChannel(a, b, 0) + ssimChannel(a, b, 1) + ssimChannel(a, b, 2)) / 3;
}

/**
 * The ToDo paper's "HPF" sharpness measure, the mean absolute high-pass-filtered image. We found the
 * exact filter neither in the paper nor in the authors' code, so this is a standard one (the
 * paper's values, about 4.85 for dense SD images, point to the 0-255 scale): the 4-neighbour 3x3 Laplacian
 * [0 1 0; 1 -4 1; 0 1 0] applied to the luminance on the 0-255 scale (BT.601 weights
 * 0.299 R + 0.587 G + 0.114 B, the grey of PIL's convert('L') without its rounding), averaged in
 * absolute value over the interior pixels (those with all four neighbours, so no padding choice
 * enters). Higher means more fine detail; a flat image scores 0.
 */
export function hpf(img: RgbImage): number {
  checkImage(img, 'image');
  const { width: w, height: h, data } = img;
  if (w < 3 || h < 3) throw new Error(`hpf needs an image of at least 3x3 pixels, got ${w}x${h}`);
  const lum = new Float64Array(w * h);
  // Integer weights then one division, so a grey pixel (v, v, v) has luminance exactly v.
  for (let i = 0; i < w * h; i++) lum[i] = (299 * data[i * 3]! + 587 * data[i * 3 + 1]! + 114 * data[i * 3 + 2]!) / 1000;
  let sum = 0;
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const i = y * w + x;
      sum += Math.abs(lum[i - w]! + lum[i + w]! + lum[i - 1]! + lum[i + 1]! - 4 * lum[i]!);
    }
  }
  return sum / ((w - 2) * (h - 2));
}
