import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RgbImage } from '../src/io/png.js';
import { hpf, mse, psnr, ssim } from '../src/bench/metrics.js';

function image(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * 3);
  return { width, height, data };
}

const close = (actual: number, expected: number, tol = 1e-12): void =>
  assert.ok(Math.abs(actual - expected) <= tol, `expected ${expected}, got ${actual}`);

/** Deterministic busy test pattern. */
const pattern = (x: number, y: number): [number, number, number] => [(x * 37 + y * 11) % 256, (x * x + 3 * y * y) % 256, ((x ^ y) * 29) % 256];

test('identical images: mse 0, psnr Infinity, ssim 1', () => {
  const a = image(16, 13, pattern);
  const b = image(16, 13, pattern);
  assert.equal(mse(a, b), 0);
  assert.equal(psnr(a, b), Infinity);
  close(ssim(a, b), 1);
});

test('a constant offset of 10 gives mse (10/255)^2 and psnr 20 log10(25.5)', () => {
  const a = image(12, 12, () => [100, 50, 200]);
  const b = image(12, 12, () => [110, 60, 210]);
  close(mse(a, b), (10 / 255) ** 2);
  close(psnr(a, b), 20 * Math.log10(25.5));
  // Mixed signs: a squared error of 5^2 on half the values, 0 on the rest.
  const c = image(2, 1, (x) => (x === 0 ? [5, 5, 5] : [0, 0, 0]));
  const d = image(2, 1, () => [0, 0, 0]);
  close(mse(c, d), 25 / 2 / 255 ** 2);
});

test('ssim of two flat images reduces to the luminance term (2ab + C1) / (a^2 + b^2 + C1), per channel', () => {
  // Flat images have zero local variance and covariance, so the contrast-structure term is C2 / C2.
  const a = image(12, 11, () => [51, 153, 0]); // 0.2, 0.6, 0.0
  const b = image(12, 11, () => [102, 153, 255]); // 0.4, 0.6, 1.0
  const C1 = 0.01 ** 2;
  const lum = (p: number, q: number): number => (2 * p * q + C1) / (p * p + q * q + C1);
  close(ssim(a, b), (lum(0.2, 0.4) + lum(0.6, 0.6) + lum(0, 1)) / 3);
});

// scikit-image 0.19.3: structural_similarity(img_as_float(a), img_as_float(b), gaussian_weights=True,
// sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1) for the pair below.
const SKIMAGE_PATTERNED = 0.9638197360884986;

test('ssim matches scikit-image on a patterned pair', () => {
  const a = image(17, 14, pattern);
  const b = image(17, 14, (x, y) => pattern(x, y).map((v, c) => Math.min(255, Math.max(0, v + (((x * 7 + y * 13 + c * 5) % 61) - 30)))) as [number, number, number]);
  close(ssim(a, b), SKIMAGE_PATTERNED, 1e-12);
  close(ssim(b, a), SKIMAGE_PATTERNED, 1e-12);
});

test('ssim needs at least the 11x11 Gaussian window, and equal sizes', () => {
  const small = image(10, 20, () => [0, 0, 0]);
  assert.throws(() => ssim(small, small), /at least 11x11/);
  assert.throws(() => ssim(image(11, 11, pattern), image(12, 11, pattern)), /differ in size/);
  assert.throws(() => mse({ width: 2, height: 2, data: new Uint8Array(3) }, image(2, 2, pattern)), /needs 12 bytes/);
});

test('hpf: flat and linear-ramp images score 0', () => {
  assert.equal(hpf(image(8, 6, () => [90, 40, 220])), 0);
  // The Laplacian of a linear function is 0.
  assert.equal(hpf(image(9, 7, (x, y) => [10 * x + 5 * y, 10 * x + 5 * y, 10 * x + 5 * y])), 0);
});

test('hpf of a one-pixel black/white checkerboard is 4 * 255', () => {
  // Every interior pixel differs by 255 from each of its 4 neighbours, all with the same sign.
  const board = image(6, 5, (x, y) => ((x + y) % 2 ? [255, 255, 255] : [0, 0, 0]));
  close(hpf(board), 1020);
  // A red/black board: luminance of pure red is 0.299 * 255.
  const red = image(6, 5, (x, y) => ((x + y) % 2 ? [255, 0, 0] : [0, 0, 0]));
  close(hpf(red), 4 * 0.299 * 255, 1e-9);
});

test('hpf of a single bright pixel: |-4 * 255| at it, 255 at its 4 neighbours, over 9 interior pixels', () => {
  const dot = image(5, 5, (x, y) => (x === 2 && y === 2 ? [255, 255, 255] : [0, 0, 0]));
  close(hpf(dot), (1020 + 4 * 255) / 9);
  assert.throws(() => hpf(image(2, 5, pattern)), /at least 3x3/);
});
