/**
 * Renders the page's tabs to PNG for the README: `todo-sd serve` on the built-in model, driven
 * in headless Chromium (/usr/bin/chromium) through a short session.
 *
 *   node --import tsx scripts/screenshots.ts [--out docs/screenshots] [--lora file.safetensors]
 *
 * `--lora` puts a LoRA made for the built-in model in the picker (e.g. the lora fixture).
 */
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Page } from 'playwright-core';
import { generateAndWait, launchChromium, openPage, paintStroke, startPageServer } from '../test/web-helpers.js';

const { values } = parseArgs({ options: { out: { type: 'string', default: 'docs/screenshots' }, lora: { type: 'string' } } });
const out = resolve(values.out!);
mkdirSync(out, { recursive: true });
const root = mkdtempSync(join(tmpdir(), 'todo-sd-screenshots-'));
const modelsDir = join(root, 'models');
mkdirSync(join(modelsDir, 'Lora'), { recursive: true });
if (values.lora) copyFileSync(values.lora, join(modelsDir, 'Lora', basename(values.lora)));

const { server, url } = await startPageServer(root, ['--models-dir', modelsDir, '--outputs', join(root, 'outputs')]);
const browser = await launchChromium();
try {
  await session(await browser.newPage({ viewport: { width: 1280, height: 1450 } }), url);
  const narrow = await browser.newPage({ viewport: { width: 390, height: 1400 } });
  await openPage(narrow, url);
  await shot(narrow, 'narrow');
} finally {
  await browser.close();
  server.proc.kill('SIGTERM');
  await server.exited;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(out, `${name}.png`) });
  process.stderr.write(`wrote ${join(out, `${name}.png`)}\n`);
}

async function session(page: Page, url: string): Promise<void> {
  await openPage(page, url);
  await page.fill('#prompt', 'a lighthouse on a rocky coast at sunset, oil painting');
  await page.fill('#negative_prompt', 'blurry, low quality');
  await page.fill('#steps', '20');
  await page.fill('#seed', '10');
  await page.fill('#n_iter', '2');
  // A dense pair first, then ToDo: the second pair's speed-up is measured against the first.
  await generateAndWait(page, 2);
  await page.selectOption('#speed-token_downsampling_factor', '2');
  await page.check('#enable_hr');
  await page.fill('#hr_second_pass_steps', '10');
  await page.uncheck('#enable_hr');
  await generateAndWait(page, 4);
  await page.check('#enable_hr');
  await page.waitForFunction(() => /hires pass/.test(document.getElementById('speed_predicted')!.textContent!));
  await shot(page, 'txt2img');

  await page.locator('#gallery figure').first().locator('.to-img2img').click();
  await page.waitForSelector('#paint_stage:not([hidden])');
  await page.fill('#prompt', 'a lighthouse on a rocky coast at night, stars, oil painting');
  await page.fill('#denoising_strength', '0.6');
  await generateAndWait(page, 6);
  await shot(page, 'img2img');

  await page.locator('#gallery figure').nth(2).locator('.to-inpaint').click();
  await page.fill('#brush_size', '60');
  await paintStroke(page, [0.15, 0.2], [0.85, 0.35]);
  await page.fill('#prompt', 'a lighthouse on a rocky coast under a red sky, oil painting');
  await page.fill('#denoising_strength', '0.95');
  await generateAndWait(page, 8);
  await shot(page, 'inpaint');
}
