import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { decode } from 'fast-png';
import { encodePng, writeRandomModel } from '../src/index.js';
import { fixture } from './helpers.js';
import type { Child } from './serve-helpers.js';
import { generateAndWait, launchChromium, openPage, paintStroke, startPageServer } from './web-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-web-'));
const modelsDir = join(root, 'models');
let server: Child;
let url: string;
let browser: Browser;
let page: Page;

before(async () => {
  // The built-in model, plus a real LoRA made for it in the models folder's Lora/.
  mkdirSync(join(modelsDir, 'Lora'), { recursive: true });
  copyFileSync(fixture('lora', 'lora-kohya.safetensors'), join(modelsDir, 'Lora', 'lora-kohya.safetensors'));
  // A second model trained (its config says) at 48 px.
  const tiny48 = join(modelsDir, 'tiny48');
  writeRandomModel(tiny48, 'tiny', { seed: 4 });
  const unetConfig = join(tiny48, 'unet', 'config.json');
  writeFileSync(unetConfig, JSON.stringify({ ...JSON.parse(readFileSync(unetConfig, 'utf8')), sample_size: 24 }));
  ({ server, url } = await startPageServer(root, ['--models-dir', modelsDir, '--outputs', join(root, 'outputs')]));
  browser = await launchChromium();
  page = await browser.newPage();
  await openPage(page, url);
});

after(async () => {
  await browser?.close();
  server?.proc.kill('SIGTERM');
  await server?.exited;
});

const value = (p: Page, id: string): Promise<string> => p.$eval(`#${id}`, (el) => (el as HTMLInputElement).value);
const fieldError = (p: Page, field: string): Promise<string> => p.$eval(`[data-field="${field}"] .error`, (el) => el.textContent ?? '');
/** RGB bytes of a decoded PNG, whatever its channels (a canvas writes RGBA). */
const rgb = (png: ReturnType<typeof decode>): number[] => [...(png.data as Uint8Array)].filter((_, i) => png.channels < 4 || i % 4 !== 3);
const galleryPng = async (p: Page, n = 0): Promise<Buffer> => {
  const href = (await p.locator('#gallery figure a').nth(n).getAttribute('href'))!;
  return Buffer.from(href.replace('data:image/png;base64,', ''), 'base64');
};

test('txt2img: native size by default, predicted speed-up, phases then steps, an image with its parameters and measured speed', async () => {
  // The built-in model is trained at 32 px: that is the default size, not 512.
  assert.deepEqual([await value(page, 'width'), await value(page, 'height')], ['32', '32']);
  assert.match(await page.textContent('#model_note') ?? '', /trained at 32x32/);
  await page.fill('#prompt', 'a lighthouse on a cliff at dusk');
  await page.fill('#height', '48');
  await page.fill('#steps', '4');
  await page.fill('#seed', '11');
  await page.selectOption('#sampler_name', 'Euler');
  await page.selectOption('#speed-token_downsampling_factor', '2');
  await page.waitForFunction(() => /Predicted \(FLOP-ideal\): \d+\.\d\dx at 32x48/.test(document.getElementById('speed_predicted')!.textContent!));
  // What /progress says of a slow phase (its reporting is tested in server.test.ts) is shown as it is.
  await page.route('**/sdapi/v1/progress', (route) =>
    route.fulfill({ json: { progress: 0, eta_relative: 0, state: { job_count: 1, job_no: 0, sampling_step: 0, sampling_steps: 0 }, current_image: null, textinfo: '', phase: { name: 'session:unet', label: 'create session: unet', seconds: 2.5 } } }),
  );
  await page.click('#generate');
  await page.waitForFunction(() => document.getElementById('progress_text')!.textContent === 'create session: unet · 2.5 s');
  await page.unroute('**/sdapi/v1/progress');
  await page.waitForFunction(() => document.querySelectorAll('#gallery figure').length === 1, undefined, { timeout: 60_000 });
  await page.waitForFunction(() => !(document.getElementById('generate') as HTMLButtonElement).disabled);
  const png = decode(await galleryPng(page));
  assert.deepEqual([png.width, png.height], [32, 48]);
  assert.match(png.text.parameters!, /^a lighthouse on a cliff at dusk\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 11, Size: 32x48, .*ToDo factor: 2/);
  assert.equal(await page.locator('#gallery figure a').first().getAttribute('download'), 'todo-sd-11.png');
  assert.match(await page.textContent('#progress_text') ?? '', /^done in \d/);
  // No dense image of this size yet: the page says so instead of inventing a speed-up.
  assert.match(await page.textContent('#speed_measured') ?? '', /32x48: \d+ ms\/step; no dense image of this size yet to compare with \(FLOP-ideal \d+\.\d\dx\)/);
  await page.selectOption('#speed-token_downsampling_factor', '1');
  await generateAndWait(page, 2);
  assert.match(await page.textContent('#speed_measured') ?? '', /32x48: dense, \d+ ms\/step \(the baseline for this size\)/);
  await page.selectOption('#speed-token_downsampling_factor', '2');
  await generateAndWait(page, 3);
  assert.match(await page.textContent('#speed_measured') ?? '', /32x48: measured \d+\.\d\dx \(\d+ ms\/step vs dense \d+\), FLOP-ideal \d+\.\d\dx(; above the FLOP ratio, so partly timing noise)?$/);
  assert.equal(await page.textContent('#error'), '');
});

test('the LoRA picker inserts a tag at the cursor, and the LoRA applies', async () => {
  await page.fill('#prompt', 'a fox in the snow');
  await page.$eval('#prompt', (el) => (el as HTMLTextAreaElement).setSelectionRange(5, 5));
  await page.selectOption('#lora_name', 'lora-kohya');
  await page.fill('#lora_weight', '0.6');
  await page.click('#lora_insert');
  assert.equal(await value(page, 'prompt'), 'a fox <lora:lora-kohya:0.6> in the snow');
  await page.fill('#prompt', 'a fox in the snow <lora:lora-kohya:0.6>');
  await page.fill('#steps', '3');
  await generateAndWait(page, 4);
  assert.match(decode(await galleryPng(page)).text.parameters!, /^a fox in the snow <lora:lora-kohya:0\.6>\n[\s\S]*Lora hashes: "lora-kohya: [0-9a-f]{12}"/);
});

test('seed reuse from the gallery: the same seed gives the same image', async () => {
  await page.fill('#prompt', 'a red barn');
  await page.fill('#seed', '-1');
  await page.fill('#steps', '3');
  await generateAndWait(page, 5);
  const first = await galleryPng(page);
  const seed = Number(await page.locator('#gallery figure').first().getAttribute('data-seed'));
  await page.fill('#seed', '-1');
  await page.locator('#gallery figure').first().locator('.reuse-seed').click();
  assert.equal(Number(await value(page, 'seed')), seed);
  await generateAndWait(page, 6);
  assert.deepEqual(decode(await galleryPng(page)).data, decode(first).data);
});

test('img2img from a gallery image; inpainting sends the painted mask (invert, blur) and keeps the rest', async () => {
  await page.locator('#gallery figure').first().locator('.to-img2img').click();
  assert.equal(await page.getAttribute('#tab-img2img', 'aria-selected'), 'true');
  await page.waitForSelector('#paint_stage:not([hidden])');
  await page.fill('#denoising_strength', '0.5');
  const sent = page.waitForRequest((r) => r.url().endsWith('/sdapi/v1/img2img'));
  await generateAndWait(page, 7);
  const body = (await sent).postDataJSON() as { init_images: string[]; denoising_strength: number; mask?: string };
  assert.equal(body.denoising_strength, 0.5);
  assert.equal(body.mask, undefined);
  assert.deepEqual(rgb(decode(Buffer.from(body.init_images[0]!, 'base64'))), rgb(decode(await galleryPng(page, 1))), 'the gallery image is the init image');
  assert.match(decode(await galleryPng(page)).text.parameters!, /Denoising strength: 0\.5/);

  await page.locator('#gallery figure').nth(1).locator('.to-inpaint').click();
  assert.equal(await page.getAttribute('#tab-inpaint', 'aria-selected'), 'true');
  // Nothing painted yet: said next to the mask, nothing sent.
  await page.click('#generate');
  assert.match(await fieldError(page, 'mask'), /paint the area to repaint/);
  await page.fill('#brush_size', '40');
  await paintStroke(page, [0.05, 0.25], [0.95, 0.25]);
  await page.check('#inpainting_mask_invert');
  await page.fill('#mask_blur', '2');
  const inpaint = page.waitForRequest((r) => r.url().endsWith('/sdapi/v1/img2img'));
  await generateAndWait(page, 8);
  const ib = (await inpaint).postDataJSON() as { mask: string; mask_blur: number; inpainting_mask_invert: number; width: number; height: number };
  assert.equal(ib.mask_blur, 2);
  assert.equal(ib.inpainting_mask_invert, 1);
  const mask = decode(Buffer.from(ib.mask, 'base64'));
  assert.deepEqual([mask.width, mask.height], [ib.width, ib.height]);
  const at = (x: number, y: number): number => (mask.data as Uint8Array)[(y * mask.width + x) * mask.channels]!;
  const row = Math.floor(mask.height * 0.25);
  assert.equal(at(Math.floor(mask.width / 2), row), 255, 'painted: white');
  assert.equal(at(Math.floor(mask.width / 2), mask.height - 2), 0, 'not painted: black');
  assert.match(decode(await galleryPng(page)).text.parameters!, /Mask blur: 2/);
  await page.click('#tab-txt2img');
});

test('bad input is named next to its field and the form keeps its values', async () => {
  await page.click('#tab-txt2img');
  await page.fill('#prompt', 'keep me');
  await page.fill('#width', '33');
  let posted = 0;
  const count = (r: { url: () => string; method: () => string }): void => void (r.method() === 'POST' && /txt2img|img2img/.test(r.url()) && posted++);
  page.on('request', count);
  await page.click('#generate');
  assert.equal(await fieldError(page, 'width'), 'must be a multiple of 8 (try 32)');
  assert.equal(await page.getAttribute('[data-field="width"]', 'class'), 'field invalid');
  assert.equal(posted, 0, 'nothing is sent');
  // Ctrl+Enter submits; the error goes once the value is right.
  await page.fill('#width', '32');
  await page.fill('#steps', '2');
  await page.check('#enable_hr');
  await page.fill('#hr_scale', '1.1');
  await page.press('#prompt', 'Control+Enter');
  // The server's 422 for the hires scale lands next to it.
  await page.waitForFunction(() => document.querySelector('[data-field="hr_scale"] .error')!.textContent !== '');
  assert.match(await fieldError(page, 'hr_scale'), /hr_scale 1\.1 gives a size of 35\.2/);
  assert.equal(await fieldError(page, 'width'), '');
  assert.equal(posted, 1);
  page.off('request', count);
  assert.deepEqual([await value(page, 'prompt'), await value(page, 'width'), await value(page, 'hr_scale')], ['keep me', '32', '1.1']);
  await page.uncheck('#enable_hr');
  // Speed settings that do not go together: the server's message next to the field, as soon as they are set.
  await page.selectOption('#speed-token_downsampling_factor', '2');
  await page.fill('#speed-token_merging_ratio', '0.5');
  await page.waitForFunction(() => document.querySelector('[data-field="token_merging_ratio"] .error')!.textContent !== '');
  assert.match(await fieldError(page, 'token_merging_ratio'), /ToDo token downsampling and ToMe token merging both change self-attention: turn one off/);
  await page.fill('#speed-token_merging_ratio', '0');
  await page.waitForFunction(() => document.querySelector('[data-field="token_merging_ratio"] .error')!.textContent === '');
  await page.selectOption('#speed-token_downsampling_factor', '1');
});

test('dropped files: a PNG loads its parameters, a non-PNG is named, a mask of another shape is refused', async () => {
  const drop = (name: string, type: string, bytes: Uint8Array, target = 'body'): Promise<void> =>
    page.evaluate(
      ({ name, type, data, target }) => {
        const dt = new DataTransfer();
        dt.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name, { type }));
        document.querySelector(target)!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
      },
      { name, type, data: Buffer.from(bytes).toString('base64'), target },
    );
  await page.fill('#prompt', 'still here');
  await drop('photo.jpg', 'image/jpeg', new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0x10]));
  await page.waitForFunction(() => document.getElementById('error')!.textContent !== '');
  assert.match(await page.textContent('#error') ?? '', /^photo\.jpg is not a PNG \(image\/jpeg\): drop a PNG made by todo-sd or AUTOMATIC1111/);
  assert.equal(await value(page, 'prompt'), 'still here');

  const parameters = 'a fox in the snow\nNegative prompt: blurry\nSteps: 12, Sampler: DDIM, Schedule type: SGM Uniform, CFG scale: 5.5, Seed: 99, Size: 64x40, Model: tiny-photo, ToDo factor: 3, ToDo mode: nearest-exact, ToDo stop at: 0.6';
  await drop('dropped.png', 'image/png', encodePng({ width: 2, height: 2, data: new Uint8Array(12) }, { parameters }));
  await page.waitForFunction(() => (document.getElementById('prompt') as HTMLTextAreaElement).value === 'a fox in the snow');
  const ids = ['negative_prompt', 'steps', 'sampler_name', 'scheduler', 'cfg_scale', 'seed', 'width', 'height', 'speed-token_downsampling_factor', 'speed-token_downsampling_disable_after', 'speed-token_merging_ratio'];
  assert.deepEqual(await Promise.all(ids.map((id) => value(page, id))), ['blurry', '12', 'DDIM', 'SGM Uniform', '5.5', '99', '64', '40', '3', '0.6', '0']);
  assert.equal(await page.textContent('#error'), '');

  // A mask must have its image's shape.
  await page.click('#tab-inpaint');
  await page.locator('#gallery figure').first().locator('.to-inpaint').click();
  await page.waitForSelector('#paint_stage:not([hidden])');
  await page.setInputFiles('#mask_file', { name: 'tall.png', mimeType: 'image/png', buffer: Buffer.from(encodePng({ width: 10, height: 20, data: new Uint8Array(600).fill(255) })) });
  await page.waitForFunction(() => document.querySelector('[data-field="mask"] .error')!.textContent !== '');
  assert.match(await fieldError(page, 'mask'), /^tall\.png is 10x20 but the image is 32x\d+: a mask must have the image's shape/);
  // A picture that is not an image at all, on the Image box.
  await drop('notes.txt', 'text/plain', new TextEncoder().encode('hello'), '#image_zone');
  await page.waitForFunction(() => document.querySelector('[data-field="init_images"] .error')!.textContent !== '');
  assert.match(await fieldError(page, 'init_images'), /notes\.txt is not an image \(text\/plain\)/);
  await page.click('#tab-txt2img');
});

test('the model picker: the size follows the model unless it was changed; the job runs on the chosen model', async () => {
  await page.click('#native_size');
  await page.selectOption('#sd_model_checkpoint', 'tiny48');
  assert.deepEqual([await value(page, 'width'), await value(page, 'height')], ['48', '48']);
  assert.match(await page.textContent('#model_note') ?? '', /trained at 48x48/);
  await page.fill('#steps', '2');
  await page.fill('#prompt', 'a boat');
  const n = await page.locator('#gallery figure').count();
  await generateAndWait(page, n + 1);
  assert.match(decode(await galleryPng(page)).text.parameters!, /Size: 48x48, Model: tiny48,/);
  await page.fill('#width', '40');
  await page.selectOption('#sd_model_checkpoint', 'tiny-photo');
  assert.deepEqual([await value(page, 'width'), await value(page, 'height')], ['40', '48']);
});

test('DeepCache and NGMS on the page: fields from the server, a predicted speed-up from the schedule, the infotext; a dropped PNG sets them', async () => {
  await page.click('#tab-txt2img');
  await page.click('#native_size');
  await page.selectOption('#speed-token_downsampling_factor', '1');
  await page.fill('#prompt', 'a harbour');
  await page.fill('#steps', '4');
  assert.equal(await page.textContent('.speed-method[data-method="deepcache"] .state'), 'off');
  await page.selectOption('#speed-deepcache_enable_pass', 'both passes');
  await page.fill('#speed-deepcache_full_run_step_rate', '2');
  await page.fill('#speed-deepcache_cache_enable_step_percentage', '0');
  assert.equal(await page.textContent('.speed-method[data-method="deepcache"] .state'), 'on');
  await page.waitForFunction(() => /Predicted \(FLOP-ideal\): \d+\.\d\dx at 32x32/.test(document.getElementById('speed_predicted')!.textContent!));
  const predicted = Number(/(\d+\.\d\d)x/.exec((await page.textContent('#speed_predicted'))!)![1]);
  assert.ok(predicted > 1, `DeepCache saves FLOPs: ${predicted}`);
  await page.fill('#speed-s_min_uncond', '1.5');
  const n = await page.locator('#gallery figure').count();
  await generateAndWait(page, n + 1);
  const parameters = decode(await galleryPng(page)).text.parameters!;
  assert.match(parameters, /DeepCache pass: both passes, DeepCache interval: 2/);
  assert.match(parameters, /NGMS: 1\.5/);

  // A PNG's DeepCache and NGMS keys set the fields; what it leaves out takes the extension's defaults.
  const dropped = 'a quay\nSteps: 6, Sampler: Euler, CFG scale: 7, Seed: 3, Size: 32x32, Model: tiny-photo, NGMS: 2, DeepCache pass: second pass, DeepCache interval: 4';
  await page.evaluate((data) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], 'dc.png', { type: 'image/png' }));
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, Buffer.from(encodePng({ width: 2, height: 2, data: new Uint8Array(12) }, { parameters: dropped })).toString('base64'));
  await page.waitForFunction(() => (document.getElementById('prompt') as HTMLTextAreaElement).value === 'a quay');
  const ids = ['speed-deepcache_enable_pass', 'speed-deepcache_full_run_step_rate', 'speed-deepcache_cache_enable_step_percentage', 'speed-s_min_uncond'];
  assert.deepEqual(await Promise.all(ids.map((id) => value(page, id))), ['second pass', '4', '0.4', '2']);
  await page.selectOption('#speed-deepcache_enable_pass', 'disable');
  await page.fill('#speed-s_min_uncond', '0');
});

test('the server goes away mid-job: the page says so and keeps the form', async () => {
  const own = await startPageServer(root, ['--outputs', join(root, 'outputs-2')]);
  const p = await browser.newPage();
  try {
    await openPage(p, own.url);
    await p.fill('#prompt', 'a long job');
    await p.fill('#steps', '150');
    await p.fill('#n_iter', '16');
    await p.click('#generate');
    await p.waitForFunction(() => /step \d+\/150/.test(document.getElementById('progress_text')!.textContent!), undefined, { timeout: 60_000 });
    own.server.proc.kill('SIGKILL');
    await p.waitForFunction(() => document.getElementById('error')!.textContent !== '', undefined, { timeout: 30_000 });
    assert.match(await p.textContent('#error') ?? '', /The server stopped answering .*Your settings are kept: start the server again and press Generate\./);
    assert.deepEqual([await value(p, 'prompt'), await value(p, 'steps'), await value(p, 'n_iter')], ['a long job', '150', '16']);
    await p.waitForSelector('#generate:not([disabled])');
  } finally {
    own.server.proc.kill('SIGKILL');
    await own.server.exited;
    await p.close();
  }
});
