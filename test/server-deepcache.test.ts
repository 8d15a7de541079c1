import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createServer } from '../src/server/app.js';
import { ModelRegistry } from '../src/server/models.js';
import { LocalQueue } from '../src/server/queue-local.js';
import { JobRunner } from '../src/server/runner.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-serve-deepcache-'));
let app: FastifyInstance;

before(async () => {
  mkdirSync(join(root, 'models'));
  const registry = new ModelRegistry(join(root, 'models'));
  app = await createServer({ registry, queue: new LocalQueue(new JobRunner(registry)), outputsDir: join(root, 'outputs') });
});
after(() => app.close());

async function post(path: string, payload: object): Promise<{ status: number; body: { info: string; detail: { loc: string[]; msg: string }[] } }> {
  const r = await app.inject({ method: 'POST', url: `/sdapi/v1/${path}`, payload });
  return { status: r.statusCode, body: r.json() };
}

const infotext = (body: { info: string }): string => (JSON.parse(body.info) as { infotexts: string[] }).infotexts[0]!;
const request = { prompt: 'a red barn', steps: 4, width: 32, height: 32, seed: 5, sampler_name: 'DDIM' };

test("DeepCache through the extension's settings, in override_settings and options; NGMS as A1111's request field and settings", async () => {
  const deepcache = { deepcache_enable_pass: 'both passes', deepcache_full_run_step_rate: 2, deepcache_cache_resnet_level: 1, deepcache_cache_enable_step_percentage: 0.25 };
  // alwayson_scripts: the extension takes no script arguments; the payload A1111 clients send passes.
  const r = await post('txt2img', { ...request, override_settings: deepcache, s_min_uncond: 2, alwayson_scripts: { DeepCache: { args: [] } } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // Resnet level 1 on tiny-photo (1 layer per block): block 0, layer 1.
  assert.match(infotext(r.body), /DeepCache pass: both passes, DeepCache interval: 2, DeepCache layer: 1, DeepCache start: 0\.25, NGMS: 2, Version/);
  const plain = await post('txt2img', request);
  assert.doesNotMatch(infotext(plain.body), /DeepCache|NGMS/);

  assert.equal((await app.inject({ method: 'POST', url: '/sdapi/v1/options', payload: { deepcache_enable_pass: 'second pass', deepcache_full_run_step_rate: 3, s_min_uncond: 1.5, s_min_uncond_all: true } })).statusCode, 200);
  const opts = (await app.inject({ method: 'GET', url: '/sdapi/v1/options' })).json() as Record<string, unknown>;
  assert.deepEqual([opts.deepcache_enable_pass, opts.deepcache_full_run_step_rate, opts.deepcache_cache_enable_step_percentage_hr, opts.s_min_uncond], ['second pass', 3, 0, 1.5]);
  // "second pass": the hires pass only, with the extension's hires start (0).
  const hires = await post('txt2img', { ...request, enable_hr: true, hr_scale: 2, denoising_strength: 0.5, s_min_uncond: null });
  assert.equal(hires.status, 200, JSON.stringify(hires.body));
  assert.match(infotext(hires.body), /DeepCache pass: second pass, DeepCache interval: 3, NGMS: 1\.5, NGMS all steps: True/);
  const noHires = await post('txt2img', { ...request, s_min_uncond: 0 });
  assert.doesNotMatch(infotext(noHires.body), /DeepCache|NGMS/);
  await app.inject({ method: 'POST', url: '/sdapi/v1/options', payload: { deepcache_enable_pass: 'disable', s_min_uncond: 0, s_min_uncond_all: false } });
});

test('bad DeepCache settings are 422 in A1111 shape, naming the valid range', async () => {
  const level = await post('txt2img', { ...request, override_settings: { deepcache_enable_pass: 'both passes', deepcache_cache_resnet_level: 4 } });
  assert.equal(level.status, 422);
  assert.deepEqual(level.body.detail[0]!.loc, ['body', 'override_settings', 'deepcache_cache_resnet_level']);
  assert.match(level.body.detail[0]!.msg, /resnet level 4 is not a level of this U-Net: use 0 … 3/);
  const pass = await post('txt2img', { ...request, override_settings: { deepcache_enable_pass: 'always' } });
  assert.equal(pass.status, 422);
  assert.deepEqual(pass.body.detail[0]!.loc, ['body', 'override_settings', 'deepcache_enable_pass']);
  const sigma = await post('txt2img', { ...request, s_min_uncond: -1 });
  assert.equal(sigma.status, 422);
  assert.deepEqual(sigma.body.detail[0]!.loc, ['body', 's_min_uncond']);
  // A refresh rate below 1 turns DeepCache off, as in the extension.
  const off = await post('txt2img', { ...request, override_settings: { deepcache_enable_pass: 'both passes', deepcache_full_run_step_rate: 0 } });
  assert.equal(off.status, 200);
  assert.doesNotMatch(infotext(off.body), /DeepCache/);
});
