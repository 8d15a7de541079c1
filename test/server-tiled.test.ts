/**
 * The tiled methods through A1111's API: the Tiled Diffusion extension's `alwayson_scripts`
 * arguments (txt2img past the plain size limit, img2img with its upscale) and A1111's SD upscale
 * script (`script_name`, `script_args`), with 422s for what this server does not offer.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from 'fast-png';
import type { FastifyInstance } from 'fastify';
import { readPngText, writeRandomModel } from '../src/index.js';
import { createServer } from '../src/server/app.js';
import { ModelRegistry } from '../src/server/models.js';
import { LocalQueue } from '../src/server/queue-local.js';
import { JobRunner } from '../src/server/runner.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-serve-tiled-'));
const modelsDir = join(root, 'models');
let app: FastifyInstance;

before(async () => {
  mkdirSync(modelsDir, { recursive: true });
  writeRandomModel(join(modelsDir, 'tiny'), 'tiny', { seed: 3 });
  const registry = new ModelRegistry(modelsDir);
  app = await createServer({ registry, queue: new LocalQueue(new JobRunner(registry)), outputsDir: join(root, 'outputs') });
});
after(() => app.close());

interface Reply {
  images: string[];
  info: string;
  detail: { loc: (string | number)[]; msg: string }[];
}

async function post(path: string, payload: object): Promise<{ status: number; body: Reply }> {
  const r = await app.inject({ method: 'POST', url: `/sdapi/v1/${path}`, payload });
  return { status: r.statusCode, body: r.json() as Reply };
}

const size = (b64: string): [number, number] => {
  const p = decode(Buffer.from(b64, 'base64'));
  return [p.width, p.height];
};
const parameters = (b64: string): string => readPngText(Buffer.from(b64, 'base64')).parameters!;

/** The extension's positional arguments: enabled, method, overwrite size, keep input size, width, height, tile w/h, overlap, batch, upscaler, scale. */
const tiled = (o: { method?: string; overwrite?: [number, number]; tile?: [number, number]; overlap?: number; upscaler?: string; scale?: number; noiseInverse?: boolean }): object => ({
  'Tiled Diffusion': {
    args: [true, o.method ?? 'MultiDiffusion', Boolean(o.overwrite), true, o.overwrite?.[0] ?? 1024, o.overwrite?.[1] ?? 1024, o.tile?.[0] ?? 16, o.tile?.[1] ?? 16, o.overlap ?? 0, 4, o.upscaler ?? 'None', o.scale ?? 2, o.noiseInverse ?? false],
  },
});

const init = Buffer.from(encode({ width: 32, height: 24, data: new Uint8Array(32 * 24 * 3).map((_, i) => (i * 13) % 256), channels: 3 })).toString('base64');

test('txt2img with Tiled Diffusion goes past the plain size limit; without it the limit holds', async () => {
  const wide = { prompt: 'a long shore', steps: 2, seed: 4, height: 32, width: 2064 };
  const plain = await post('txt2img', wide);
  assert.equal(plain.status, 422);
  assert.match(plain.body.detail[0]!.msg, /width and height are at most 2048 without Tiled Diffusion \(alwayson_scripts\); got 2064x32/);
  const r = await post('txt2img', { ...wide, width: 512, alwayson_scripts: tiled({ overwrite: [2064, 32], tile: [16, 16], overlap: 0 }) });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(size(r.body.images[0]!), [2064, 32]);
  assert.match(parameters(r.body.images[0]!), /Tiled Diffusion: \{"Method": "MultiDiffusion", "Tile tile width": 16, "Tile tile height": 16, "Tile Overlap": 0, "Tile batch size": 4\}/);
  // Disabled (first argument false): a plain request.
  const off = await post('txt2img', { ...wide, width: 32, alwayson_scripts: { 'tiled diffusion': { args: [false] } } });
  assert.equal(off.status, 200);
  assert.doesNotMatch(parameters(off.body.images[0]!), /Tiled Diffusion/);
});

test('img2img with Tiled Diffusion: its Lanczos upscale sets the canvas (keep input size)', async () => {
  const r = await post('img2img', { prompt: 'x', init_images: [init], denoising_strength: 0.5, steps: 2, seed: 1, width: 32, height: 24, alwayson_scripts: tiled({ tile: [16, 16], overlap: 8, upscaler: 'Lanczos', scale: 2 }) });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(size(r.body.images[0]!), [64, 48]);
});

test('SD upscale by script_name: tiles of width x height, n_iter upscales from seed + n', async () => {
  const r = await post('img2img', { prompt: 'x', init_images: [init], denoising_strength: 0.5, steps: 2, seed: 10, n_iter: 2, width: 32, height: 32, script_name: 'SD upscale', script_args: ['', 8, 1, 2] });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.images.length, 2);
  assert.deepEqual(size(r.body.images[0]!), [64, 48]);
  assert.deepEqual(JSON.parse(r.body.info).all_seeds, [10, 11]);
  const text = parameters(r.body.images[0]!);
  assert.match(text, /Size: 32x32/);
  assert.match(text, /SD upscale overlap: 8, SD upscale upscaler: Lanczos, SD upscale scale: 2/);
});

test('what is not offered is a 422 naming it', async () => {
  const cases: [string, object, RegExp][] = [
    ['txt2img', { alwayson_scripts: tiled({ method: 'Mixture of Diffusers' }) }, /method "Mixture of Diffusers" is not offered here \(only MultiDiffusion\)/],
    ['txt2img', { alwayson_scripts: tiled({ noiseInverse: true }) }, /noise inversion is not offered/],
    ['txt2img', { alwayson_scripts: tiled({ tile: [16, 32] }) }, /only square tiles/],
    ['txt2img', { script_name: 'SD upscale' }, /not offered for txt2img/],
    ['img2img', { init_images: [init], script_name: 'X/Y/Z plot' }, /script "X\/Y\/Z plot" is not offered here/],
    ['img2img', { init_images: [init], script_name: 'sd upscale', script_args: ['', 64, 7, 2] }, /upscaler_index 7 is not offered here; available: 0 None, 1 Lanczos/],
    ['img2img', { init_images: [init], script_name: 'sd upscale', alwayson_scripts: tiled({}) }, /two ways to tile/],
  ];
  for (const [path, body, msg] of cases) {
    const r = await post(path, { prompt: 'x', steps: 1, width: 32, height: 32, ...body });
    assert.equal(r.status, 422, JSON.stringify(body));
    assert.match(r.body.detail[0]!.msg, msg);
  }
});
