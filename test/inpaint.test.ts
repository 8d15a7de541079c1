import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BUILTIN_MODEL_DIR, StableDiffusion, type RgbImage } from '../src/index.js';
import { decodeImage } from '../src/io/image.js';
import { blendLatents, fillMasked, INPAINT_FILLS, pasteOriginal, prepareMask } from '../src/pipeline/inpaint.js';
import { fixture } from './helpers.js';

let pipe: StableDiffusion;
let init: RgbImage;
before(async () => {
  pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
  init = await decodeImage(readFileSync(fixture('img2img', 'init-32.png')));
});
after(() => pipe.dispose());

/** White (repaint) where `repaint(x, y)`, black elsewhere. */
function maskImage(width: number, height: number, repaint: (x: number, y: number) => boolean): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.fill(repaint(x, y) ? 255 : 0, (y * width + x) * 3, (y * width + x + 1) * 3);
  return { width, height, data };
}

function meanAbsDiff(a: RgbImage, b: RgbImage, where: (x: number, y: number) => boolean): number {
  let d = 0;
  let n = 0;
  for (let y = 0; y < a.height; y++) {
    for (let x = 0; x < a.width; x++) {
      if (!where(x, y)) continue;
      for (let c = 0; c < 3; c++) d += Math.abs(a.data[(y * a.width + x) * 3 + c]! - b.data[(y * b.width + x) * 3 + c]!);
      n += 3;
    }
  }
  return d / n;
}

const left = (x: number): boolean => x < 16;
const base = { prompt: 'a red sunset over the sea', steps: 6, sampler: 'ddim' as const, seed: 4, strength: 1 };

test('inpainting keeps the unmasked pixels and repaints the masked ones, for every fill mode', async () => {
  const mask = maskImage(32, 32, left);
  const results: RgbImage[] = [];
  for (const fill of INPAINT_FILLS) {
    const r = await pipe.generate({ ...base, initImage: init, mask: { image: mask, blur: 2, fill } });
    const img = r.images[0]!;
    results.push(img);
    // Beyond the blur's reach the original comes back exactly; inside the mask the picture is new.
    assert.equal(meanAbsDiff(img, init, (x) => x >= 24), 0, `${fill}: unmasked region preserved`);
    assert.ok(meanAbsDiff(img, init, (x) => x < 10) > 4, `${fill}: masked region repainted`);
    assert.match(img.parameters, /Denoising strength: 1, Mask blur: 2/);
  }
  assert.notDeepEqual(results[0]!.data, results[2]!.data, 'latent noise starts elsewhere than the original');
});

test('invert swaps the regions; a mask of another size is resized to the picture', async () => {
  const inverted = await pipe.generate({ ...base, initImage: init, mask: { image: maskImage(32, 32, left), blur: 0, invert: true } });
  assert.equal(meanAbsDiff(inverted.images[0]!, init, (x) => x < 16), 0);
  assert.ok(meanAbsDiff(inverted.images[0]!, init, (x) => x >= 18) > 4);
  const small = await pipe.generate({ ...base, initImage: init, mask: { image: maskImage(8, 8, (x) => x < 4), blur: 0 } });
  // Lanczos rings up to three source pixels (12 here) past the edge at x = 16.
  assert.equal(meanAbsDiff(small.images[0]!, init, (x) => x >= 29), 0);
  assert.ok(meanAbsDiff(small.images[0]!, init, (x) => x < 12) > 4);
});

test('mask preparation: alpha when it is not opaque, blur, latent grid rounding', () => {
  const opaque = { ...maskImage(8, 8, (x) => x < 4), alpha: new Uint8Array(64).fill(255) };
  const fromGrey = prepareMask({ image: opaque, blur: 0 }, 8, 8, 4, 4);
  assert.deepEqual(Array.from(fromGrey.latent), [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0]);
  // A1111's create_binary_mask: a transparent-ish alpha wins over the colours, thresholded at 128.
  const alpha = Uint8Array.from({ length: 64 }, (_, p) => (Math.floor(p / 8) < 4 ? 200 : 100));
  const fromAlpha = prepareMask({ image: { ...maskImage(8, 8, () => false), alpha }, blur: 0 }, 8, 8, 4, 4);
  assert.deepEqual(Array.from(fromAlpha.latent), [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  const blurred = prepareMask({ image: maskImage(32, 32, left), blur: 4 }, 32, 32, 16, 16).pixels;
  assert.ok(blurred[16]! > 0 && blurred[16]! < 255 && blurred[0] === 255 && blurred[31] === 0, 'soft edge');
});

test('blend, fill and paste-back arithmetic', () => {
  const x = { data: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), dims: [1, 2, 2, 2] };
  const keep = { data: new Float32Array(8).fill(-1), dims: [1, 2, 2, 2] };
  assert.deepEqual(Array.from(blendLatents(x, keep, Float32Array.from([1, 0, 0.5, 1])).data), [1, -1, 1, 4, 5, -1, 3, 8]);
  const img = { width: 4, height: 1, data: Uint8Array.from([200, 0, 0, 200, 0, 0, 9, 9, 9, 9, 9, 9]) };
  const filled = fillMasked(img, Uint8Array.from([0, 0, 255, 255]));
  assert.deepEqual(Array.from(filled.data.subarray(0, 6)), [200, 0, 0, 200, 0, 0], 'kept pixels stay');
  assert.ok(filled.data[6]! > 150 && filled.data[7]! < 20, 'masked pixels take the colour around them');
  const gen = { width: 4, height: 1, data: new Uint8Array(12).fill(100) };
  const pasted = pasteOriginal(gen, img, Uint8Array.from([0, 64, 128, 255]));
  assert.deepEqual(Array.from(pasted.data.filter((_, i) => i % 3 === 0)), [200, 150, 100, 100]);
});

test('a mask without an init image, or with the hires fix, is refused', async () => {
  await assert.rejects(pipe.generate({ prompt: 'x', mask: { image: maskImage(32, 32, left) } }), /a mask needs the image it masks/);
  await assert.rejects(
    pipe.generate({ prompt: 'x', initImage: init, mask: { image: maskImage(32, 32, left) }, hires: { scale: 2, denoise: 0.5, upscaler: 'latent' } }),
    /hires fix and inpainting do not combine/,
  );
  await assert.rejects(pipe.generate({ prompt: 'x', initImage: init, mask: { image: maskImage(32, 32, left), blur: -1 } }), /mask blur must be a number of pixels from 0 to 64/);
});
