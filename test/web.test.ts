import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { decode } from 'fast-png';
import { encodePng } from '../src/index.js';
import { startCli, type Child } from './serve-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-web-'));
let server: Child;
let url: string;
let browser: Browser;
let page: Page;

before(async () => {
  // `todo-sd serve` alone: the built-in model, port 0 = any free one.
  server = startCli(['serve', '--port', '0', '--outputs', join(root, 'outputs')], root);
  url = (await server.waitFor(/serving on (http:\/\/\S+)/))[1]!;
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
  server?.proc.kill('SIGTERM');
  await server?.exited;
});

test('the page: type a prompt, generate, see progress with a preview, get an image to download', async () => {
  await page.goto(url);
  await page.waitForFunction(() => (document.getElementById('sampler_name') as HTMLSelectElement).options.length > 0);
  await page.fill('#prompt', 'a lighthouse on a cliff at dusk');
  await page.fill('#width', '32');
  await page.fill('#height', '48');
  await page.fill('#steps', '40');
  await page.fill('#seed', '11');
  await page.selectOption('#sampler_name', 'Euler');
  await page.selectOption('#todo_factor', '2');
  await page.waitForFunction(() => /FLOP-ideal speed-up at 32x48: \d+\.\d\dx/.test(document.getElementById('speedup')!.textContent!));
  await page.click('#generate');
  await page.waitForFunction(() => /step \d+\/40/.test(document.getElementById('progress_text')!.textContent!), undefined, { timeout: 60_000 });
  await page.waitForSelector('#preview:not([hidden])', { timeout: 60_000 });
  const link = await page.waitForSelector('#gallery figure a', { timeout: 120_000 });
  assert.equal(await link.getAttribute('download'), 'todo-sd-11.png');
  const href = (await link.getAttribute('href'))!;
  const pngBytes = Buffer.from(href.replace('data:image/png;base64,', ''), 'base64');
  const png = decode(pngBytes);
  assert.deepEqual([png.width, png.height], [32, 48]);
  assert.match(png.text.parameters!, /^a lighthouse on a cliff at dusk\nSteps: 40, Sampler: Euler, CFG scale: 7, Seed: 11, Size: 32x48, .*ToDo factor: 2/);
  assert.equal(await page.textContent('#progress_text'), 'done');
  assert.equal(await page.textContent('#error'), '');
  await page.screenshot({ path: join(root, 'page.png') });
});

test('the page: dropping a PNG loads its parameters into the form', async () => {
  const parameters = 'a fox in the snow\nNegative prompt: blurry\nSteps: 12, Sampler: DDIM, Schedule type: SGM Uniform, CFG scale: 5.5, Seed: 99, Size: 64x40, Model: tiny-photo, ToDo factor: 3, ToDo mode: nearest-exact, ToDo stop at: 0.6';
  const file = join(root, 'dropped.png');
  writeFileSync(file, encodePng({ width: 2, height: 2, data: new Uint8Array(12) }, { parameters }));
  await page.goto(url);
  await page.waitForFunction(() => (document.getElementById('sampler_name') as HTMLSelectElement).options.length > 0);
  const b64 = readFileSync(file).toString('base64');
  await page.evaluate((data) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, b64);
  await page.waitForFunction(() => (document.getElementById('prompt') as HTMLTextAreaElement).value === 'a fox in the snow');
  const values = await page.evaluate(() =>
    ['negative_prompt', 'steps', 'sampler_name', 'scheduler', 'cfg_scale', 'seed', 'width', 'height', 'todo_factor', 'todo_disable_after'].map((id) => (document.getElementById(id) as HTMLInputElement).value),
  );
  assert.deepEqual(values, ['blurry', '12', 'DDIM', 'SGM Uniform', '5.5', '99', '64', '40', '3', '0.6']);
});
