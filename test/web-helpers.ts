/** Driving the page in headless Chromium (Debian's): a server, a browser, a page ready to use. */
import { chromium, type Browser, type Page } from 'playwright-core';
import { startCli, type Child } from './serve-helpers.js';

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}

/** `todo-sd serve` on any free port; resolves once it listens. */
export async function startPageServer(cwd: string, args: string[] = []): Promise<{ server: Child; url: string }> {
  const server = startCli(['serve', '--port', '0', ...args], cwd);
  const url = (await server.waitFor(/serving on (http:\/\/\S+)/))[1]!;
  return { server, url };
}

/** Opens the page and waits until it has read the server's lists. */
export async function openPage(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.waitForSelector('body[data-ready]');
}

/** Clicks Generate and waits for the gallery to hold `count` images and the form to be free again. */
export async function generateAndWait(page: Page, count: number, timeout = 120_000): Promise<void> {
  await page.click('#generate');
  await page.waitForFunction((n) => document.querySelectorAll('#gallery figure').length >= n, count, { timeout });
  await page.waitForFunction(() => !(document.getElementById('generate') as HTMLButtonElement).disabled, undefined, { timeout });
}

/** Paints a stroke across the mask canvas, from and to fractions of its box. */
export async function paintStroke(page: Page, from: [number, number], to: [number, number]): Promise<void> {
  await page.waitForSelector('#paint_stage:not([hidden])');
  await page.locator('#mask_canvas').scrollIntoViewIfNeeded();
  const box = (await page.locator('#mask_canvas').boundingBox())!;
  await page.mouse.move(box.x + box.width * from[0], box.y + box.height * from[1]);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * to[0], box.y + box.height * to[1], { steps: 10 });
  await page.mouse.up();
}
