import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from 'fast-png';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { loadUpscaler, readPngText, SafetensorsFile, upscaleBy, upscaleExtras, UserError, writeRandomModel, writeRandomUpscaler, type EsrganConfig } from '../src/index.js';
import { createServer } from '../src/server/app.js';
import { ModelRegistry } from '../src/server/models.js';
import { LocalQueue } from '../src/server/queue-local.js';
import { JobRunner } from '../src/server/runner.js';
import { tensorsOf, writeTorchFile } from './torch-writer.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-serve-up-'));
const modelsDir = join(root, 'models');
const tiny: EsrganConfig = { architecture: 'ESRGAN', inChannels: 3, outChannels: 3, features: 8, blocks: 1, growth: 4, upsamples: 2, unshuffle: 1, scale: 4 };
let app: FastifyInstance;
const realesrgan = join(modelsDir, 'RealESRGAN', 'RealESRGAN_x4plus.pth');

before(async () => {
  mkdirSync(join(modelsDir, 'ESRGAN'), { recursive: true });
  mkdirSync(join(modelsDir, 'RealESRGAN'), { recursive: true });
  writeRandomModel(join(modelsDir, 'tiny'), 'tiny', { seed: 3 });
  writeRandomUpscaler(join(modelsDir, 'ESRGAN', 'tiny-esrgan.safetensors'), tiny, 1);
  // Under A1111's file name for "R-ESRGAN 4x+", as Real-ESRGAN ships it: a .pth with params_ema.
  const st = join(root, 'x4.safetensors');
  writeRandomUpscaler(st, tiny, 2);
  writeTorchFile(realesrgan, tensorsOf(SafetensorsFile.open(st)), { format: 'zip', wrap: 'params_ema' });
  const registry = new ModelRegistry(modelsDir);
  app = await createServer({ registry, queue: new LocalQueue(new JobRunner(registry)), outputsDir: join(root, 'outputs') });
});
after(() => app.close());

async function call<T>(method: 'GET' | 'POST', path: string, payload?: object): Promise<{ status: number; body: T }> {
  const r = await app.inject({ method, url: `/sdapi/v1/${path}`, ...(payload && { payload }) });
  return { status: r.statusCode, body: r.json() as T };
}

const noise = (w: number, h: number): { width: number; height: number; data: Uint8Array } => ({ width: w, height: h, data: Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 37) % 251) });
const b64 = (img: { width: number; height: number; data: Uint8Array }): string => Buffer.from(encode({ ...img, channels: 3 })).toString('base64');

test('upscalers and realesrgan-models list the models in ESRGAN/ and RealESRGAN/ with A1111 names and shapes', async () => {
  const list = await call<{ name: string; model_name: string | null; model_path: string | null; model_url: null; scale: number }[]>('GET', 'upscalers');
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.map((u) => u.name), ['None', 'Lanczos', 'Nearest', 'R-ESRGAN 4x+', 'tiny-esrgan']);
  assert.deepEqual(list.body[3], { name: 'R-ESRGAN 4x+', model_name: null, model_path: realesrgan, model_url: null, scale: 4 });
  assert.equal(list.body[4]!.model_name, 'ESRGAN_4x');
  const re = await call<{ name: string; path: string; scale: number }[]>('GET', 'realesrgan-models');
  assert.deepEqual(re.body, [{ name: 'R-ESRGAN 4x+', path: realesrgan, scale: 4 }]);
});

test('extra-single-image with a model: the library result, A1111 info text, to-size with crop, a blended second upscaler', async () => {
  const img = noise(16, 12);
  const r = await call<{ image: string; html_info: string }>('POST', 'extra-single-image', { image: b64(img), upscaling_resize: 2, upscaler_1: 'R-ESRGAN 4x+' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.html_info, '<p>Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+</p>');
  const out = decode(Buffer.from(r.body.image, 'base64'));
  assert.deepEqual([out.width, out.height], [32, 24]);
  const model = await loadUpscaler(realesrgan, { name: 'R-ESRGAN 4x+' });
  const lib = await upscaleExtras(img, { mode: 'by', by: 2, upscaler: model });
  await model.dispose();
  assert.deepEqual(Buffer.from(out.data), Buffer.from(lib.image.data), 'the server gives what upscaleExtras gives');
  assert.equal(readPngText(Buffer.from(r.body.image, 'base64')).postprocessing, 'Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+');

  const to = await call<{ image: string; html_info: string }>('POST', 'extra-single-image', {
    image: b64(img),
    resize_mode: 1,
    upscaling_resize_w: 40,
    upscaling_resize_h: 20,
    upscaling_crop: true,
    upscaler_1: 'tiny-esrgan',
    upscaler_2: 'Nearest',
    extras_upscaler_2_visibility: 0.5,
    gfpgan_visibility: 0.3,
  });
  assert.equal(to.status, 200, JSON.stringify(to.body));
  const t = decode(Buffer.from(to.body.image, 'base64'));
  assert.deepEqual([t.width, t.height], [40, 20]);
  assert.match(to.body.html_info, /Postprocess upscale to: 40x20, Postprocess crop to: 40x20, Postprocess upscaler: tiny-esrgan, Postprocess upscaler 2: Nearest<br>\nFace restoration \(GFPGAN, CodeFormer\) is not available/);

  // "None" leaves the image as it is, as A1111 does.
  const none = await call<{ image: string }>('POST', 'extra-single-image', { image: b64(img), upscaler_1: 'None', upscaler_2: 'Lanczos', extras_upscaler_2_visibility: 1 });
  assert.deepEqual(Buffer.from(decode(Buffer.from(none.body.image, 'base64')).data), Buffer.from(img.data));
});

test('extra-batch-images upscales each image; unknown upscalers and oversized results are 422s', async () => {
  const r = await call<{ images: string[]; html_info: string }>('POST', 'extra-batch-images', {
    imageList: [{ data: b64(noise(8, 8)), name: 'a.png' }, { data: b64(noise(16, 8)), name: 'b.png' }],
    upscaling_resize: 4,
    upscaler_1: 'Lanczos',
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.images.map((i) => { const d = decode(Buffer.from(i, 'base64')); return [d.width, d.height]; }), [[32, 32], [64, 32]]);
  const unknown = await call<{ detail: { loc: string[]; msg: string }[] }>('POST', 'extra-single-image', { image: b64(noise(8, 8)), upscaler_1: '4x-UltraSharp' });
  assert.equal(unknown.status, 422);
  assert.deepEqual(unknown.body.detail[0]!.loc, ['body', 'upscaler_1']);
  assert.match(unknown.body.detail[0]!.msg, /available: None, Lanczos, Nearest, R-ESRGAN 4x\+, tiny-esrgan/);
  const big = await call<{ detail: { loc: string[] }[] }>('POST', 'extra-single-image', { image: b64(noise(1100, 8)), upscaling_resize: 8, upscaler_1: 'Lanczos' });
  assert.equal(big.status, 422);
  assert.deepEqual(big.body.detail[0]!.loc, ['body', 'upscaling_resize']);
});

test('extras read JPEG and WebP as img2img does; a damaged picture is a 422 on its field; a damaged upscaler file is a UserError', async () => {
  const img = noise(16, 12);
  const raw = sharp(Buffer.from(img.data), { raw: { width: 16, height: 12, channels: 3 } });
  const webp = (await raw.clone().webp({ lossless: true }).toBuffer()).toString('base64');
  const jpeg = (await raw.clone().jpeg().toBuffer()).toString('base64');
  const body = { upscaling_resize: 2, upscaler_1: 'Lanczos' };
  const fromPng = await call<{ image: string }>('POST', 'extra-single-image', { ...body, image: b64(img) });
  const fromWebp = await call<{ image: string }>('POST', 'extra-single-image', { ...body, image: webp });
  assert.equal(fromWebp.status, 200, JSON.stringify(fromWebp.body));
  assert.deepEqual(Buffer.from(decode(Buffer.from(fromWebp.body.image, 'base64')).data), Buffer.from(decode(Buffer.from(fromPng.body.image, 'base64')).data), 'lossless WebP gives the PNG\'s result');
  const batch = await call<{ images: string[] }>('POST', 'extra-batch-images', { ...body, imageList: [{ data: `data:image/jpeg;base64,${jpeg}`, name: 'a.jpg' }] });
  assert.equal(batch.status, 200, JSON.stringify(batch.body));
  assert.deepEqual([decode(Buffer.from(batch.body.images[0]!, 'base64')).width, decode(Buffer.from(batch.body.images[0]!, 'base64')).height], [32, 24]);
  const damaged = await call<{ detail: { loc: (string | number)[]; msg: string }[] }>('POST', 'extra-batch-images', { ...body, imageList: [{ data: jpeg.slice(0, 200), name: 'a.jpg' }] });
  assert.equal(damaged.status, 422);
  assert.deepEqual(damaged.body.detail[0]!.loc, ['body', 'imageList', 0, 'data']);
  assert.match(damaged.body.detail[0]!.msg, /damaged JPEG/);
  const junk = join(root, 'junk.pth');
  writeFileSync(junk, Buffer.from('PK\x03\x04 not really a zip'));
  await assert.rejects(loadUpscaler(junk), (e) => e instanceof UserError);
});

test('txt2img hires fix with an upscaler model by name; the infotext names it', async () => {
  const r = await call<{ images: string[]; info: string }>('POST', 'txt2img', { prompt: 'a fox', width: 32, height: 32, steps: 2, enable_hr: true, hr_scale: 2, hr_upscaler: 'R-ESRGAN 4x+', hr_second_pass_steps: 2, denoising_strength: 0.5, seed: 1 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const d = decode(Buffer.from(r.body.images[0]!, 'base64'));
  assert.deepEqual([d.width, d.height], [64, 64]);
  assert.match(JSON.parse(r.body.info).infotexts[0], /Hires upscaler: R-ESRGAN 4x\+/);
  const bad = await call<{ detail: { loc: string[]; msg: string }[] }>('POST', 'txt2img', { prompt: 'x', width: 32, height: 32, steps: 2, enable_hr: true, hr_upscaler: 'SwinIR 4x' });
  assert.equal(bad.status, 422);
  assert.match(bad.body.detail[0]!.msg, /unknown hr_upscaler "SwinIR 4x"; available: Latent, .*R-ESRGAN 4x\+, tiny-esrgan/);
});

test("img2img: SD upscale's upscaler_index counts in /upscalers (models included) and Tiled Diffusion's upscale takes a model by name; each redraws exactly the model's picture", async () => {
  const img = noise(24, 16);
  const model = await loadUpscaler(realesrgan, { name: 'R-ESRGAN 4x+' });
  const enlarged = await upscaleBy(img, 2, model);
  await model.dispose();
  const base = { prompt: 'a fox', steps: 2, seed: 7, denoising_strength: 0.5, width: 32, height: 32 };
  type Reply = { images: string[]; detail: { msg: string }[] };
  const pixels = (r: { status: number; body: Reply }): Buffer => {
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return Buffer.from(decode(Buffer.from(r.body.images[0]!, 'base64')).data);
  };
  // A1111's script skips the upscaler for None: the same tiles of the model's picture.
  const byIndex = await call<Reply>('POST', 'img2img', { ...base, init_images: [b64(img)], script_name: 'SD upscale', script_args: ['', 8, 3, 2] });
  const asIs = await call<Reply>('POST', 'img2img', { ...base, init_images: [b64(enlarged)], script_name: 'SD upscale', script_args: ['', 8, 0, 2] });
  assert.deepEqual(pixels(byIndex), pixels(asIs));
  assert.match(readPngText(Buffer.from(byIndex.body.images[0]!, 'base64')).parameters!, /SD upscale upscaler: R-ESRGAN 4x\+/);
  const bad = await call<Reply>('POST', 'img2img', { ...base, init_images: [b64(img)], script_name: 'SD upscale', script_args: ['', 8, 5, 2] });
  assert.equal(bad.status, 422);
  assert.match(bad.body.detail[0]!.msg, /upscaler_index 5 is not offered here; available: 0 None, 1 Lanczos, 2 Nearest, 3 R-ESRGAN 4x\+, 4 tiny-esrgan/);

  // The Tiled Diffusion extension's args: enabled, method, overwrite size, keep input size, w, h, tile w/h, overlap, batch, upscaler, scale.
  const tiled = (upscaler: string): object => ({ 'Tiled Diffusion': { args: [true, 'MultiDiffusion', false, true, 0, 0, 16, 16, 8, 4, upscaler, 2] } });
  const upscaled = await call<Reply>('POST', 'img2img', { ...base, init_images: [b64(img)], alwayson_scripts: tiled('R-ESRGAN 4x+') });
  const plain = await call<Reply>('POST', 'img2img', { ...base, init_images: [b64(enlarged)], alwayson_scripts: tiled('None') });
  assert.deepEqual(decode(Buffer.from(upscaled.body.images[0]!, 'base64')).width, 48);
  assert.deepEqual(pixels(upscaled), pixels(plain));
  const unknown = await call<Reply>('POST', 'img2img', { ...base, init_images: [b64(img)], alwayson_scripts: tiled('SwinIR 4x') });
  assert.equal(unknown.status, 422);
  assert.match(unknown.body.detail[0]!.msg, /upscaler "SwinIR 4x" is not offered here; available: None, Lanczos, Nearest, R-ESRGAN 4x\+, tiny-esrgan/);
});
