import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resampleNearest } from '../src/image/resample.js';
import { writeRandomUpscaler, loadUpscaler, type EsrganConfig } from '../src/index.js';
import { upscaleExtras } from '../src/pipeline/extras.js';
import { fitImage } from '../src/pipeline/img2img.js';
import { blendImages, centerOnCanvas, resizeWithUpscaler, upscaleBy } from '../src/pipeline/upscale-image.js';

const tmp = mkdtempSync(join(tmpdir(), 'todo-sd-upscale-image-'));
const ramp = (w: number, h: number): { width: number; height: number; data: Uint8Array } => ({ width: w, height: h, data: Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 7) % 256) });

test("Pillow's NEAREST: source pixel ⌊(x + ½) · in / out⌋, summed step by step", () => {
  const row = { width: 3, height: 1, channels: 1, data: Uint8Array.of(10, 20, 30) };
  assert.deepEqual([...resampleNearest(row, 7, 1).data], [10, 10, 20, 20, 20, 30, 30]);
  const four = { width: 4, height: 1, channels: 1, data: Uint8Array.of(1, 2, 3, 4) };
  assert.deepEqual([...resampleNearest(four, 2, 1).data], [2, 4]);
  assert.deepEqual([...resampleNearest(four, 8, 1).data], [1, 1, 2, 2, 3, 3, 4, 4]);
});

test("A1111's Upscaler.upscale: the model until the size is reached (at most three passes), then Lanczos to ⌊size·scale/8⌋·8", async () => {
  const cfg: EsrganConfig = { architecture: 'ESRGAN', inChannels: 3, outChannels: 3, features: 4, blocks: 1, growth: 2, upsamples: 2, unshuffle: 1, scale: 4 };
  const file = join(tmp, 'x4.safetensors');
  writeRandomUpscaler(file, cfg);
  const model = await loadUpscaler(file);
  const passes = (): { onTile: () => void; count: () => number } => {
    let n = 0;
    return { onTile: () => void n++, count: () => n };
  };
  const img = ramp(8, 8);
  const twice = passes();
  const big = await upscaleBy(img, 8, model, { tile: 0, onTile: twice.onTile });
  assert.deepEqual([big.width, big.height, twice.count()], [64, 64, 2]);
  // Its result is the two passes' 128x128, brought down by Lanczos.
  const direct = fitImage(await model.upscale(await model.upscale(img, { tile: 0 }), { tile: 0 }), 64, 64);
  assert.deepEqual(big.data, direct.data);
  // Scale 1 still runs the model once (A1111's `i > 0 or scale != 1`), and comes back to the size.
  const one = passes();
  const same = await upscaleBy(img, 1, model, { tile: 0, onTile: one.onTile });
  assert.deepEqual([same.width, same.height, one.count()], [8, 8, 1]);
  // Not a multiple of 8: rounded down, as A1111 does.
  assert.deepEqual([(await upscaleBy(ramp(10, 6), 2, 'nearest')).width, (await upscaleBy(ramp(10, 6), 2, 'nearest')).height], [16, 8]);
  // The hires fix's resize: upscale by the larger ratio, then Lanczos to the exact size.
  const hires = await resizeWithUpscaler(img, 24, 16, model, { tile: 0 });
  assert.deepEqual(hires.data, fitImage(fitImage(await model.upscale(img, { tile: 0 }), 24, 24), 24, 16).data);
  assert.deepEqual((await resizeWithUpscaler(img, 24, 16, 'none')).data, fitImage(img, 24, 16).data);
  await model.dispose();
});

test("Extras: None leaves the image, a second upscaler blends as Pillow's Image.blend, crop centres on black", async () => {
  const img = ramp(12, 8);
  assert.deepEqual(await upscaleExtras(img, { mode: 'by', by: 2, upscaler: 'none', upscaler2: 'lanczos', upscaler2Visibility: 1 }), { image: img, info: [] });
  const a = { width: 2, height: 1, data: Uint8Array.of(0, 10, 200, 255, 20, 100) };
  const b = { width: 2, height: 1, data: Uint8Array.of(255, 20, 0, 0, 20, 101) };
  assert.deepEqual([...blendImages(a, b, 0.5).data], [127, 15, 100, 127, 20, 100]);
  assert.deepEqual([...blendImages(a, b, 0.3).data], [76, 13, 140, 178, 20, 100]);
  const c = centerOnCanvas({ width: 4, height: 2, data: Uint8Array.from({ length: 24 }, (_, i) => i + 1) }, 2, 4);
  // x offset 1 − 2 = −1 (the first column is cut off), y offset 2 − 1 = 1 (a black row above and below).
  assert.deepEqual([...c.data], [0, 0, 0, 0, 0, 0, 4, 5, 6, 7, 8, 9, 16, 17, 18, 19, 20, 21, 0, 0, 0, 0, 0, 0]);
  const r = await upscaleExtras(img, { mode: 'to', width: 30, height: 10, crop: true, upscaler: 'lanczos', upscaler2: 'nearest', upscaler2Visibility: 0.4 });
  assert.deepEqual([r.image.width, r.image.height], [30, 10]);
  assert.deepEqual(r.info, [
    ['Postprocess upscale to', '30x10'],
    ['Postprocess crop to', '30x10'],
    ['Postprocess upscaler', 'Lanczos'],
    ['Postprocess upscaler 2', 'Nearest'],
  ]);
});
