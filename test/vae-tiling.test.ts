import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadVAE, BUILTIN_MODEL_DIR, randn } from '../src/index.js';
import { decodeTiled, encodeTiled, tileStarts } from '../src/pipeline/vae-tiling.js';
import type { Tensor } from '../src/tensor.js';

test('tile starts cover the whole axis with equal tiles and at least the asked overlap', () => {
  assert.deepEqual(tileStarts(16, 32, 8), [0]);
  for (const [size, tile, overlap] of [
    [100, 32, 8],
    [64, 16, 4],
    [33, 16, 4],
  ]) {
    const s = tileStarts(size!, tile!, overlap!);
    assert.equal(s[0], 0);
    assert.equal(s.at(-1)! + tile!, size);
    for (let i = 1; i < s.length; i++) assert.ok(s[i - 1]! + tile! - s[i]! >= overlap!, `overlap at ${i}`);
  }
});

test('decodeTiled blends to exactly the untiled result when tiles agree (partition of unity)', async () => {
  // A "decoder" that upsamples by 2 without context: any tiling must reproduce it exactly.
  const lat: Tensor = { data: Float32Array.from({ length: 2 * 3 * 20 * 28 }, (_, i) => Math.sin(i * 0.37)), dims: [2, 3, 20, 28] };
  const up = async (t: Tensor): Promise<Tensor> => {
    const [b, c, h, w] = t.dims as [number, number, number, number];
    const out = new Float32Array(b * c * h * w * 4);
    for (let n = 0; n < b * c; n++) for (let y = 0; y < 2 * h; y++) for (let x = 0; x < 2 * w; x++) out[(n * 2 * h + y) * 2 * w + x] = t.data[(n * h + (y >> 1)) * w + (x >> 1)]!;
    return { data: out, dims: [b, c, 2 * h, 2 * w] };
  };
  const whole = await up(lat);
  const tiled = await decodeTiled(lat, 2, up, { tile: 8, overlap: 3 });
  assert.deepEqual(tiled.dims, whole.dims);
  let maxErr = 0;
  for (let i = 0; i < whole.data.length; i++) maxErr = Math.max(maxErr, Math.abs(tiled.data[i]! - whole.data[i]!));
  assert.ok(maxErr < 1e-5, `max error ${maxErr}`);
});

test('tiled VAE decode of the trained tiny model is seamless and close to the untiled decode', async () => {
  const vae = await loadVAE(BUILTIN_MODEL_DIR);
  // A stationary latent, 48x48 (96x96 pixels), cut into 2x2 tiles of 24.
  const h = 48;
  const lat: Tensor = { data: randn(0, [1, 4, h, h]), dims: [1, 4, h, h] };
  const whole = await vae.decode(lat);
  const tiled = await decodeTiled(lat, 2, (t) => vae.decode(t), { tile: 24, overlap: 8 });
  await vae.dispose();
  let err = 0;
  let ref = 0;
  for (let i = 0; i < whole.data.length; i++) {
    err += (tiled.data[i]! - whole.data[i]!) ** 2;
    ref += whole.data[i]! ** 2;
  }
  // Each tile's GroupNorm statistics and mid-block attention see only the tile, so tiled
  // decoding is close to, not equal to, whole decoding (as in diffusers); measured 0.083 here.
  const rel = Math.sqrt(err / ref);
  assert.ok(rel < 0.12, `relative L2 difference ${rel}`);
  // No seam: the largest jump between neighbouring pixel columns is no larger in the tiled image.
  const W = 2 * h;
  const maxJump = (d: Float32Array): number => {
    let m = 0;
    for (let y = 0; y < W; y++) for (let x = 1; x < W; x++) m = Math.max(m, Math.abs(d[y * W + x]! - d[y * W + x - 1]!));
    return m;
  };
  assert.ok(maxJump(tiled.data) <= maxJump(whole.data) * 1.1, 'no seam');
});

test('encodeTiled blends mean and log-variance to exactly the untiled result when tiles agree', async () => {
  // An "encoder" that average-pools 2x2 without context (mean) and squares it (logvar): any tiling reproduces it.
  const img: Tensor = { data: Float32Array.from({ length: 2 * 3 * 40 * 56 }, (_, i) => Math.cos(i * 0.11)), dims: [2, 3, 40, 56] };
  const pool = async (t: Tensor): Promise<{ mean: Tensor; logvar: Tensor }> => {
    const [b, c, h, w] = t.dims as [number, number, number, number];
    const mean = new Float32Array((b * c * h * w) / 4);
    for (let n = 0; n < b * c; n++) {
      for (let y = 0; y < h / 2; y++) {
        for (let x = 0; x < w / 2; x++) {
          const at = (yy: number, xx: number): number => t.data[(n * h + 2 * y + yy) * w + 2 * x + xx]!;
          mean[(n * (h / 2) + y) * (w / 2) + x] = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4;
        }
      }
    }
    const dims = [b, c, h / 2, w / 2];
    return { mean: { data: mean, dims }, logvar: { data: mean.map((v) => v * v), dims } };
  };
  const whole = await pool(img);
  const tiled = await encodeTiled(img, 2, pool, { tile: 8, overlap: 3 });
  for (const k of ['mean', 'logvar'] as const) {
    assert.deepEqual(tiled[k].dims, whole[k].dims);
    let maxErr = 0;
    for (let i = 0; i < whole[k].data.length; i++) maxErr = Math.max(maxErr, Math.abs(tiled[k].data[i]! - whole[k].data[i]!));
    assert.ok(maxErr < 1e-5, `${k}: max error ${maxErr}`);
  }
});

test('tiled VAE encode of the trained tiny model is close to the untiled encode', async () => {
  const vae = await loadVAE(BUILTIN_MODEL_DIR);
  const side = 96;
  const img: Tensor = { data: Float32Array.from({ length: 3 * side * side }, (_, i) => 0.6 * Math.sin((i % side) * 0.09 + Math.floor(i / side) * 0.05)), dims: [1, 3, side, side] };
  const whole = await vae.encodeDistribution(img);
  const tiled = await encodeTiled(img, 2, (t) => vae.encodeDistribution(t), { tile: 24, overlap: 8 });
  await vae.dispose();
  let err = 0;
  let ref = 0;
  for (let i = 0; i < whole.mean.data.length; i++) {
    err += (tiled.mean.data[i]! - whole.mean.data[i]!) ** 2;
    ref += whole.mean.data[i]! ** 2;
  }
  // GroupNorm statistics and the mid-block attention see only the tile, as in decoding; measured 0.108 here.
  const rel = Math.sqrt(err / ref);
  assert.ok(rel < 0.12, `relative L2 difference ${rel}`);
});
