import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import type { FastifyInstance } from 'fastify';
import { writeRandomModel, writeRandomTinyVAEFiles } from '../src/index.js';
import { createServer } from '../src/server/app.js';
import { ModelRegistry } from '../src/server/models.js';
import { LocalQueue } from '../src/server/queue-local.js';
import { JobRunner } from '../src/server/runner.js';

// Live previews by A1111's show_progress_type "TAESD": the TAESD from <models-dir>/VAE-approx.
const root = mkdtempSync(join(tmpdir(), 'todo-sd-serve-taesd-'));
const withTaesd = join(root, 'with');
const sdxlOnly = join(root, 'sdxl-only');
const warnings: string[] = [];
let app: FastifyInstance;
let bare: FastifyInstance;

before(async () => {
  for (const dir of [withTaesd, sdxlOnly]) {
    mkdirSync(dir, { recursive: true });
    writeRandomModel(join(dir, 'tiny'), 'tiny', { seed: 3 });
  }
  writeRandomTinyVAEFiles(join(withTaesd, 'VAE-approx', 'taesd_decoder.safetensors'), 'taesd-tiny', { seed: 1 });
  // Only SDXL's TAESD, for an SD 1.x model.
  writeRandomTinyVAEFiles(join(sdxlOnly, 'VAE-approx', 'taesdxl_decoder.safetensors'), 'taesd-tiny', { seed: 2 });
  const server = (dir: string): Promise<FastifyInstance> => {
    const registry = new ModelRegistry(dir);
    return createServer({ registry, queue: new LocalQueue(new JobRunner(registry, { onWarning: (m) => warnings.push(m) })), outputsDir: join(root, 'out'), model: 'tiny' });
  };
  app = await server(withTaesd);
  bare = await server(sdxlOnly);
});
after(async () => {
  await app.close();
  await bare.close();
  rmSync(root, { recursive: true, force: true });
});

interface Progress {
  state: { sampling_step: number };
  current_image: string | null;
}

/** Runs a slow job, returns the first progress that shows a preview (or the last seen), then interrupts it. */
async function previewOf(a: FastifyInstance, overrides: object = {}): Promise<Progress> {
  const running = a.inject({ method: 'POST', url: '/sdapi/v1/txt2img', payload: { prompt: 'a slow one', steps: 40, width: 32, height: 32, seed: 1, override_settings: overrides } });
  let seen: Progress | undefined;
  for (let i = 0; i < 500 && !seen?.current_image; i++) {
    const p = (await a.inject({ method: 'GET', url: '/sdapi/v1/progress' })).json() as Progress;
    if (p.state.sampling_step > 2) seen = p;
    else await new Promise((r) => setTimeout(r, 20));
  }
  await a.inject({ method: 'POST', url: '/sdapi/v1/interrupt' });
  assert.equal((await running).statusCode, 200);
  assert.ok(seen, 'the job never reported a step');
  return seen;
}

const size = (b64: string): number[] => {
  const png = decode(Buffer.from(b64, 'base64'));
  return [png.width, png.height];
};

test('options hold A1111\'s show_progress_type and live_previews_enable; unknown methods are a 422', async () => {
  const o = (await app.inject({ method: 'GET', url: '/sdapi/v1/options' })).json() as Record<string, unknown>;
  assert.deepEqual([o.show_progress_type, o.live_previews_enable], ['Approx cheap', true]);
  const bad = await app.inject({ method: 'POST', url: '/sdapi/v1/options', payload: { show_progress_type: 'Approx fancy' } });
  assert.equal(bad.statusCode, 422);
});

test('with show_progress_type "TAESD", /progress shows the TAESD decode of the image in progress (full size)', async () => {
  assert.equal((await app.inject({ method: 'POST', url: '/sdapi/v1/options', payload: { show_progress_type: 'TAESD' } })).statusCode, 200);
  const p = await previewOf(app);
  assert.ok(p.current_image, 'no preview while the job ran');
  // 32x32 pixels: the TAESD decode; the cheap approximation would be one pixel per latent (16x16).
  assert.deepEqual(size(p.current_image), [32, 32]);
  // A request's override_settings picks the method for that request.
  const cheap = await previewOf(app, { show_progress_type: 'Approx cheap' });
  assert.deepEqual(size(cheap.current_image!), [16, 16]);
  const none = await previewOf(app, { live_previews_enable: false });
  assert.equal(none.current_image, null);
});

test("without a TAESD for the model's family, TAESD previews fall back to the cheap approximation and say so once", async () => {
  const before = warnings.length;
  for (let i = 0; i < 2; i++) {
    const p = await previewOf(bare, { show_progress_type: 'TAESD' });
    assert.deepEqual(size(p.current_image!), [16, 16]);
  }
  const said = warnings.slice(before).filter((w) => /TAESD live previews for tiny: no TAESD for SD 1\.x \/ 2\.x in .*VAE-approx: expected taesd_decoder\.safetensors.*; showing the cheap approximation/.test(w));
  assert.equal(said.length, 1, warnings.slice(before).join('\n'));
});
