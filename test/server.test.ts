import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from 'fast-png';
import type { FastifyInstance } from 'fastify';
import { buildUNetGraph, parseUNetConfig, readPngText, writeRandomModel } from '../src/index.js';
import { denseAttention } from '../src/attention/dense.js';
import { WeightRecorder } from '../src/graph/weights.js';
import type { CacheGraph } from '../src/models/unet-cache.js';
import { createServer, type ServerOptions } from '../src/server/app.js';
import { ModelRegistry } from '../src/server/models.js';
import { LocalQueue } from '../src/server/queue-local.js';
import { fitImage } from '../src/server/resize-mode.js';
import { flattenImage } from '../src/image/decode.js';
import { decodeImage } from '../src/io/image.js';
import { JobControl, JobRunner } from '../src/server/runner.js';
import type { JobProgress, JobQueue, JobSpec } from '../src/server/jobs.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-serve-'));
const modelsDir = join(root, 'models');
const outputs = join(root, 'outputs');
let app: FastifyInstance;

async function server(extra: Partial<ServerOptions> = {}): Promise<FastifyInstance> {
  const registry = new ModelRegistry(modelsDir);
  return createServer({ registry, queue: new LocalQueue(new JobRunner(registry)), outputsDir: outputs, ...extra });
}

before(async () => {
  mkdirSync(join(modelsDir, 'Lora'), { recursive: true });
  writeRandomModel(join(modelsDir, 'tiny'), 'tiny', { seed: 3 });
  writeFileSync(join(modelsDir, 'Lora', 'film-grain.safetensors'), '');
  app = await server();
});
after(() => app.close());

interface Txt2ImgResponse {
  images: string[];
  parameters: Record<string, unknown>;
  info: string;
}

async function post<T = Txt2ImgResponse>(path: string, payload: object, a = app): Promise<{ status: number; body: T }> {
  const r = await a.inject({ method: 'POST', url: `/sdapi/v1/${path}`, payload });
  return { status: r.statusCode, body: r.json() as T };
}

async function get<T>(path: string): Promise<T> {
  const r = await app.inject({ method: 'GET', url: `/sdapi/v1/${path}` });
  assert.equal(r.statusCode, 200, r.body);
  return r.json() as T;
}

const png = (b64: string): ReturnType<typeof decode> => decode(Buffer.from(b64, 'base64'));

// A1111's own API tests post payloads like this, legacy fields included.
const a1111Payload = {
  prompt: 'a ((lighthouse)) on a (cliff:1.1) at [dusk:1], [from::2] [from:to:0.3] [alt|alt1]',
  negative_prompt: 'blurry',
  styles: [],
  seed: 42,
  subseed: -1,
  subseed_strength: 0,
  seed_resize_from_h: -1,
  seed_resize_from_w: -1,
  sampler_index: 'Euler a',
  batch_size: 2,
  n_iter: 2,
  steps: 3,
  cfg_scale: 7.0,
  width: 32,
  height: 48,
  restore_faces: false,
  tiling: false,
  do_not_save_samples: true,
  do_not_save_grid: true,
  eta: 0,
  s_min_uncond: 0,
  s_churn: 0,
  s_tmax: 0,
  s_tmin: 0,
  s_noise: 1,
  firstphase_width: 0,
  firstphase_height: 0,
  override_settings: {},
  override_settings_restore_afterwards: true,
  script_args: [],
  send_images: true,
  save_images: false,
  alwayson_scripts: {},
  sampler_name: null,
  hr_checkpoint_name: null,
};

test('txt2img: A1111 payload with legacy fields, non-square, batch_size 2 × n_iter 2 → 4 PNGs with parameters and A1111 info', async () => {
  const r = await post('txt2img', a1111Payload);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.images.length, 4);
  const info = JSON.parse(r.body.info) as Record<string, unknown> & { all_seeds: number[]; infotexts: string[] };
  assert.equal(info.seed, 42);
  assert.deepEqual(info.all_seeds, [42, 43, 44, 45]);
  assert.equal(info.width, 32);
  assert.equal(info.height, 48);
  assert.equal(info.sampler_name, 'Euler a');
  assert.equal(info.steps, 3);
  assert.equal(info.batch_size, 2);
  assert.equal(info.sd_model_name, 'tiny-photo');
  assert.equal(info.infotexts.length, 4);
  assert.equal(r.body.parameters.prompt, a1111Payload.prompt);
  assert.equal(r.body.parameters.s_churn, 0);
  r.body.images.forEach((b64, i) => {
    const p = png(b64);
    assert.equal(p.width, 32);
    assert.equal(p.height, 48);
    const text = readPngText(Buffer.from(b64, 'base64')).parameters!;
    assert.equal(text, info.infotexts[i]);
    assert.match(text, new RegExp(`Seed: ${42 + i},`));
    assert.match(text, /Steps: 3, Sampler: Euler a, CFG scale: 7, .*Size: 32x48/);
  });
  // Each image has its own seed, so no two are the same.
  assert.equal(new Set(r.body.images).size, 4);
});

test('txt2img: the same seed gives the same image; seed -1 draws one and reports it', async () => {
  const one = { prompt: 'a red barn', steps: 2, width: 32, height: 32, seed: 7, sampler_name: 'DDIM' };
  const [a, b] = [await post('txt2img', one), await post('txt2img', one)];
  assert.equal(a.body.images[0], b.body.images[0]);
  const r = await post('txt2img', { ...one, seed: -1 });
  const info = JSON.parse(r.body.info) as { seed: number; all_seeds: number[] };
  assert.ok(info.seed >= 0 && info.all_seeds[0] === info.seed);
});

test('samplers by A1111 name and scheduler', async () => {
  const cases: [object, RegExp][] = [
    [{ sampler_name: 'Euler' }, /Sampler: Euler,/],
    [{ sampler_name: 'DPM++ 2M Karras' }, /Sampler: DPM\+\+ 2M Karras,/],
    [{ sampler_name: 'DPM++ 2M', scheduler: 'Karras' }, /Sampler: DPM\+\+ 2M Karras,/],
    [{ sampler_name: 'PLMS' }, /Sampler: PLMS,/],
    [{ sampler_name: 'DDIM', scheduler: 'Automatic' }, /Sampler: DDIM,/],
    [{ sampler_name: 'UniPC' }, /Sampler: UniPC,/],
    [{ sampler_name: 'Euler', scheduler: 'SGM Uniform' }, /Sampler: Euler, Schedule type: SGM Uniform,/],
    [{ sampler_name: 'DDIM', scheduler: 'sgm_uniform' }, /Sampler: DDIM, Schedule type: SGM Uniform,/],
    [{ sampler_name: 'Euler a', scheduler: 'Uniform' }, /Sampler: Euler a, Schedule type: Uniform,/],
    [{ sampler_name: 'LCM', cfg_scale: 1.5, eta: 0 }, /Sampler: LCM, CFG scale: 1\.5,/],
    [{ sampler_name: 'TCD', cfg_scale: 1, eta: 0.5 }, /Sampler: TCD, Eta: 0\.5, CFG scale: 1,/],
  ];
  for (const [fields, expected] of cases) {
    const r = await post('txt2img', { prompt: 'a cat', steps: 3, width: 32, height: 32, seed: 1, ...fields });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.match(readPngText(Buffer.from(r.body.images[0]!, 'base64')).parameters!, expected);
  }
  const names = (await get<{ name: string }[]>('samplers')).map((s) => s.name);
  assert.ok(names.includes('Euler a') && names.includes('DPM++ 2M Karras') && names.includes('LCM') && names.includes('TCD'));
});

test('bad values are 422 in A1111 error shape; unknown fields are ignored', async () => {
  const bad = await post<{ detail: { loc: (string | number)[]; msg: string; type: string }[] }>('txt2img', { steps: 'many', width: 33, batch_size: 100, foo: 'bar' });
  assert.equal(bad.status, 422);
  const locs = bad.body.detail.map((d) => d.loc.join('.'));
  assert.deepEqual(locs.sort(), ['body.batch_size', 'body.steps', 'body.width']);
  for (const d of bad.body.detail) assert.ok(d.msg.length > 0 && d.type.length > 0);

  const sampler = await post<{ detail: { loc: string[]; msg: string }[] }>('txt2img', { steps: 2, width: 32, height: 32, sampler_name: 'Nonexistent sampler' });
  assert.equal(sampler.status, 422);
  assert.deepEqual(sampler.body.detail[0]!.loc, ['body', 'sampler_name']);
  assert.match(sampler.body.detail[0]!.msg, /unknown sampler "Nonexistent sampler".*Euler a/);

  const clip = await post<{ detail: { loc: string[] }[] }>('txt2img', { steps: 2, width: 32, height: 32, override_settings: { CLIP_stop_at_last_layers: 0 } });
  assert.equal(clip.status, 422);
  assert.deepEqual(clip.body.detail[0]!.loc, ['body', 'override_settings', 'CLIP_stop_at_last_layers']);

  const karras = await post<{ detail: { msg: string }[] }>('txt2img', { steps: 2, width: 32, height: 32, sampler_name: 'DDIM', scheduler: 'Karras' });
  assert.equal(karras.status, 422);
  assert.match(karras.body.detail[0]!.msg, /Karras schedule is not available for DDIM/);
  const sgm = await post<{ detail: { loc: string[]; msg: string }[] }>('txt2img', { steps: 2, width: 32, height: 32, sampler_name: 'LCM', scheduler: 'SGM Uniform' });
  assert.equal(sgm.status, 422);
  assert.match(sgm.body.detail[0]!.msg, /LCM picks its steps from its own distillation schedule; use the Automatic scheduler/);
  const exponential = await post<{ detail: { loc: string[]; msg: string }[] }>('txt2img', { steps: 2, width: 32, height: 32, scheduler: 'Exponential' });
  assert.equal(exponential.status, 422);
  assert.match(exponential.body.detail[0]!.msg, /unknown scheduler "Exponential"; available: Automatic, Uniform, Karras, SGM Uniform/);
  const eta = await post<{ detail: { loc: string[]; msg: string }[] }>('txt2img', { steps: 2, width: 32, height: 32, sampler_name: 'TCD', eta: 1.5 });
  assert.equal(eta.status, 422);
  assert.deepEqual(eta.body.detail[0]!.loc, ['body', 'eta']);
});

test('models resolve by name inside --models-dir only; sd_model_checkpoint switches models', async () => {
  const models = await get<{ title: string; model_name: string }[]>('sd-models');
  assert.deepEqual(models.map((m) => m.title), ['tiny-photo', 'tiny']);
  for (const name of ['../models/tiny', '/etc/passwd', join(modelsDir, 'tiny'), 'nonexistent']) {
    const r = await post<{ detail: { loc: string[]; msg: string }[] }>('options', { sd_model_checkpoint: name });
    assert.equal(r.status, 422, name);
    assert.match(r.body.detail[0]!.msg, /unknown model .* available: tiny-photo, tiny/);
  }
  const over = await post('txt2img', { prompt: 'x', steps: 2, width: 32, height: 32, override_settings: { sd_model_checkpoint: 'tiny' } });
  assert.equal(JSON.parse(over.body.info).sd_model_name, 'tiny');
  // override_settings lasts one request.
  assert.equal((await get<{ sd_model_checkpoint: string }>('options')).sd_model_checkpoint, 'tiny-photo');
  assert.equal((await post('options', { sd_model_checkpoint: 'tiny [abc123]', CLIP_stop_at_last_layers: 2, some_a1111_option: true })).status, 200);
  const opts = await get<Record<string, unknown>>('options');
  assert.equal(opts.sd_model_checkpoint, 'tiny');
  assert.equal(opts.CLIP_stop_at_last_layers, 2);
  const r = await post('txt2img', { prompt: 'x', steps: 2, width: 32, height: 32 });
  assert.equal(JSON.parse(r.body.info).sd_model_name, 'tiny');
  assert.match(JSON.parse(r.body.info).infotexts[0], /Model: tiny, Clip skip: 2/);
  await post('options', { sd_model_checkpoint: 'tiny-photo', CLIP_stop_at_last_layers: 1 });
});

test('ToDo through the extension settings keys, in options and in override_settings', async () => {
  const todo = { token_downsampling_factor: 2, token_downsampling_max_depth: 1, token_downsampling_disable_after: 0.5 };
  const r = await post('txt2img', { prompt: 'x', steps: 2, width: 32, height: 32, seed: 3, override_settings: todo });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // The extension's infotext keys; its operator (nearest-exact) goes unsaid.
  assert.match(JSON.parse(r.body.info).infotexts[0], /ToDo factor: 2\.0, ToDo max depth: 1, ToDo disable after: 0\.5/);
  const dense = await post('txt2img', { prompt: 'x', steps: 2, width: 32, height: 32, seed: 3 });
  assert.doesNotMatch(JSON.parse(dense.body.info).infotexts[0], /ToDo/);
  assert.equal((await post('options', { token_downsampling_factor: 3 })).status, 200);
  assert.equal((await get<Record<string, unknown>>('options')).token_downsampling_factor, 3);
  const viaOptions = await post('txt2img', { prompt: 'x', steps: 2, width: 32, height: 32, seed: 3 });
  assert.match(JSON.parse(viaOptions.body.info).infotexts[0], /ToDo factor: 3\.0/);
  await post('options', { token_downsampling_factor: 1 });
  // Fractional factors and both attention levels, as the extension allows.
  const both = await post('txt2img', { prompt: 'x', steps: 2, width: 32, height: 32, seed: 3, override_settings: { token_downsampling_factor: 1.5, token_downsampling_max_depth: 2 } });
  assert.equal(both.status, 200, JSON.stringify(both.body));
  assert.match(JSON.parse(both.body.info).infotexts[0], /ToDo factor: 1\.5, ToDo max depth: 2,/);
  const big = await post<{ detail: { loc: string[] }[] }>('txt2img', { prompt: 'x', steps: 2, width: 32, height: 32, override_settings: { token_downsampling_factor: 10 } });
  assert.equal(big.status, 422);
  assert.deepEqual(big.body.detail[0]!.loc, ['body', 'override_settings', 'token_downsampling_factor']);
});

test('the FLOP-ideal speed-up: grows with the size for ToDo, counts disable_after, 1 when off; ToMe too; one of the two', async () => {
  type Passes = { methods: string[]; passes: { pass: number; width: number; height: number; flopIdealSpeedup: number; denseGflops: number; gflops: number }[] };
  const at = async (q: string, status = 200): Promise<Passes & { detail: { loc: string[]; msg: string }[] }> => {
    const r = await app.inject({ method: 'GET', url: `/todo-sd/v1/speedup?${q}` });
    assert.equal(r.statusCode, status, r.body);
    return r.json();
  };
  const small = (await at('width=256&height=256&token_downsampling_factor=2')).passes[0]!;
  const large = (await at('width=1024&height=1024&token_downsampling_factor=2')).passes[0]!;
  const off = await at('width=1024&height=1024&token_downsampling_factor=1');
  assert.ok(small.flopIdealSpeedup > 1, String(small.flopIdealSpeedup));
  assert.ok(large.flopIdealSpeedup > small.flopIdealSpeedup);
  assert.deepEqual(off.methods, []);
  assert.equal(off.passes[0]!.flopIdealSpeedup, 1);
  assert.equal(off.passes[0]!.gflops, off.passes[0]!.denseGflops);
  // Half the steps at the reduced cost: dense / (0.5 todo + 0.5 dense).
  const half = (await at('width=1024&height=1024&token_downsampling_factor=2&token_downsampling_disable_after=0.5')).passes[0]!;
  assert.ok(Math.abs(half.flopIdealSpeedup - large.denseGflops / (0.5 * large.gflops + 0.5 * large.denseGflops)) < 1e-9);
  // The hires fix's second pass at its own size.
  const hires = await at('width=256&height=256&hr_scale=2&token_downsampling_factor=2');
  assert.deepEqual(hires.passes.map((p) => [p.pass, p.width, p.height]), [[1, 256, 256], [2, 512, 512]]);
  const tome = await at('width=512&height=512&token_merging_ratio=0.5');
  assert.deepEqual(tome.methods, ['tome']);
  assert.ok(tome.passes[0]!.flopIdealSpeedup > 1);
  const both = await at('width=512&height=512&token_merging_ratio=0.5&token_downsampling_factor=2', 422);
  assert.equal(both.detail[0]!.loc.at(-1), 'token_merging_ratio');
  assert.match(both.detail[0]!.msg, /ToDo token downsampling and ToMe token merging both change self-attention: turn one off/);
  const unknown = await at('width=512&height=512&model=nope', 422);
  assert.match(unknown.detail[0]!.msg, /unknown model "nope"/);
});

test("DeepCache's FLOP-ideal speed-up: the whole and shallow graphs' FLOPs over its schedule, per pass; NGMS is a method without a FLOP figure", async () => {
  type Passes = { methods: string[]; passes: { pass: number; steps: number; flopIdealSpeedup: number; denseGflops: number; gflops: number }[] };
  const at = async (q: string): Promise<Passes> => {
    const r = await app.inject({ method: 'GET', url: `/todo-sd/v1/speedup?model=tiny&width=64&height=64&${q}` });
    assert.equal(r.statusCode, 200, r.body);
    return r.json();
  };
  // The tiny model's graphs counted here: VAE scale 2, batch 2, the cache point of resnet level 0.
  const cfg = parseUNetConfig(JSON.parse(readFileSync(join(modelsDir, 'tiny', 'unet', 'config.json'), 'utf8')) as Record<string, unknown>);
  const flops = (cache?: CacheGraph): number => {
    const f = buildUNetGraph(cfg, new WeightRecorder(), { batch: 2, height: 32, width: 32, textLength: 77 }, denseAttention, {}, cache).flops;
    return f.attention + f.other;
  };
  const [whole, shallow] = [flops(), flops({ point: { block: 0, layer: 0 }, graph: 'shallow' })];
  assert.ok(shallow < whole);
  const dc = 'deepcache_enable_pass=both%20passes&deepcache_full_run_step_rate=3&deepcache_cache_enable_step_percentage=0.2';
  const r = await at(`steps=10&${dc}&hr_scale=2&hr_second_pass_steps=4`);
  assert.deepEqual(r.methods, ['deepcache']);
  // 10 steps: the first ⌊0.2 · 10⌋ = 2 whole, then the helper's rule (i mod 3 = 0): whole at 0, 1, 3, 6, 9.
  assert.ok(Math.abs(r.passes[0]!.flopIdealSpeedup - (10 * whole) / (5 * whole + 5 * shallow)) < 1e-9);
  // The hires pass: its own 4 steps from 0 (the hires start, default 0): whole at 0 and 3.
  assert.equal(r.passes[1]!.steps, 4);
  assert.ok(r.passes[1]!.flopIdealSpeedup > 1);
  const every = await at(`steps=10&${dc.replace('rate=3', 'rate=1')}`);
  assert.equal(every.passes[0]!.flopIdealSpeedup, 1);
  const second = await at(`steps=10&${dc.replace('both%20passes', 'second%20pass')}&hr_scale=2`);
  assert.deepEqual(second.passes.map((p) => p.flopIdealSpeedup > 1), [false, true]);
  const ngms = await at('steps=10&s_min_uncond=1.5');
  assert.deepEqual([ngms.methods, ngms.passes[0]!.flopIdealSpeedup], [['ngms'], 1]);
});

test('speed methods and models describe themselves: fields with limits and defaults, native sizes', async () => {
  const r = await app.inject({ method: 'GET', url: '/todo-sd/v1/speed-methods' });
  const { methods } = r.json() as { methods: { id: string; fields: { key: string; type: string; min?: number; max?: number; default: number | string; choices?: { value: number | string }[] }[] }[] };
  assert.deepEqual(methods.map((m) => m.id), ['todo', 'tome', 'deepcache', 'ngms']);
  const options = await get<Record<string, unknown>>('options');
  for (const f of methods.flatMap((m) => m.fields)) {
    assert.equal(options[f.key], f.default, f.key);
    if (f.type === 'text') assert.ok(f.choices!.some((c) => c.value === f.default), f.key);
    else assert.ok(f.min! <= (f.default as number) && (f.default as number) <= f.max!, f.key);
  }
  // The A1111 extension's own defaults: DeepCache off, refresh every 5 steps from 40% of them; NGMS off.
  assert.deepEqual([options.deepcache_enable_pass, options.deepcache_full_run_step_rate, options.deepcache_cache_enable_step_percentage, options.s_min_uncond], ['disable', 5, 0.4, 0]);
  const models = (await app.inject({ method: 'GET', url: '/todo-sd/v1/models' })).json() as { model_name: string; native_width: number; family: string }[];
  // sample_size 16 × VAE scale 2 for both (the built-in model is trained at 32 px).
  assert.deepEqual(models.map((m) => [m.model_name, m.family, m.native_width]), [['tiny-photo', 'sd', 32], ['tiny', 'sd', 32]]);
});

test('a job reports its slow phases (loading, sessions) before its steps, and times its steps', async () => {
  const runner = new JobRunner(new ModelRegistry(modelsDir));
  const reports: JobProgress[] = [];
  const job: JobSpec = { kind: 'txt2img', model: 'tiny', prompt: 'x', negativePrompt: '', width: 32, height: 32, steps: 4, cfg: 7, sampler: 'euler', karras: false, clipSkip: 1, attention: { method: 'dense' }, seeds: [1, 2] };
  const result = await runner.run(job, new JobControl(), (p) => reports.push(p));
  await runner.dispose();
  const phases = reports.filter((p) => p.phase).map((p) => p.phase!.name);
  for (const name of ['load:unet', 'encode:prompt', 'session:text_encoder', 'session:unet', 'decode:vae']) assert.ok(phases.includes(name), `${name} in ${phases.join(', ')}`);
  const firstStep = reports.findIndex((p) => p.step > 0 && !p.phase);
  assert.ok(reports.findIndex((p) => p.phase?.name === 'session:unet') < firstStep);
  assert.ok(reports.every((p) => !p.phase || p.phase.since <= Date.now()));
  // Two images of 4 steps; each image's first step follows the prompt's encoding and is not counted.
  assert.equal(result.timing.length, 1);
  assert.deepEqual([result.timing[0]!.pass, result.timing[0]!.width, result.timing[0]!.steps], [1, 32, 6]);
  assert.ok(result.timing[0]!.stepMs > 0);
});

test('/progress names the phase in progress in textinfo and as data', async () => {
  const since = Date.now() - 2500;
  const queue: JobQueue = {
    run: () => Promise.reject(new Error('not here')),
    status: async () => ({ running: [{ id: '7', startedAt: since, progress: { image: 0, images: 1, step: 0, steps: 20, phase: { name: 'session:unet', since } } }], waiting: 1, flags: { interrupted: false, skipped: false } }),
    interrupt: async () => {},
    skip: async () => {},
    close: async () => {},
  };
  const a = await server({ queue });
  const p = (await a.inject({ method: 'GET', url: '/sdapi/v1/progress' })).json() as { textinfo: string; phase: { name: string; label: string; seconds: number } };
  await a.close();
  // The seconds as they were when the request was answered (a first request also compiles the server's schemas).
  const shown = Number(/^create session: unet \((\d+\.\d) s\); 1 running, 1 waiting$/.exec(p.textinfo)?.[1]);
  assert.ok(shown >= 2.5 && shown < 10, p.textinfo);
  assert.deepEqual([p.phase.name, p.phase.label], ['session:unet', 'create session: unet']);
  assert.ok(p.phase.seconds >= 2.5 && p.phase.seconds < 10);
});

test('each job says its speed: FLOP-ideal per pass, and measured against the last dense job of its shape', async () => {
  type Speed = { methods: string[]; passes: { pass: number; width: number; stepMs?: number; denseStepMs?: number | null; measuredSpeedup?: number | null; flopIdealSpeedup: number }[] };
  const speedOf = async (extra: object): Promise<Speed> => {
    const r = await post('txt2img', { prompt: 'x', steps: 4, width: 40, height: 32, seed: 1, sampler_name: 'Euler', ...extra });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return (JSON.parse(r.body.info) as { speed: Speed }).speed;
  };
  const before = await speedOf({ override_settings: { token_downsampling_factor: 2 } });
  assert.deepEqual(before.methods, ['todo']);
  assert.equal(before.passes[0]!.measuredSpeedup, null, 'no dense job of this shape yet');
  const dense = await speedOf({});
  assert.deepEqual(dense.methods, []);
  const d = dense.passes[0]!;
  assert.equal(d.flopIdealSpeedup, 1);
  assert.equal(d.denseStepMs, d.stepMs);
  const todo = await speedOf({ override_settings: { token_downsampling_factor: 2 } });
  const t = todo.passes[0]!;
  assert.equal(t.denseStepMs, d.stepMs);
  assert.ok(Math.abs(t.measuredSpeedup! - d.stepMs! / t.stepMs!) < 1e-9);
  assert.ok(t.flopIdealSpeedup > 1);
  // ToMe through A1111's own setting, and the hires fix's second pass at its size.
  const r = await post('txt2img', { prompt: 'x', steps: 3, width: 32, height: 32, seed: 1, enable_hr: true, hr_scale: 2, hr_second_pass_steps: 3, override_settings: { token_merging_ratio: 0.5 } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const info = JSON.parse(r.body.info) as { speed: Speed; infotexts: string[] };
  assert.match(info.infotexts[0]!, /Token merging ratio: 0\.5/);
  assert.deepEqual(info.speed.methods, ['tome']);
  assert.deepEqual(info.speed.passes.map((p) => [p.pass, p.width]), [[1, 32], [2, 64]]);
});

test('progress shows the running job with a latent preview; interrupt keeps the finished images', async () => {
  const running = post('txt2img', { prompt: 'a slow one', steps: 30, width: 32, height: 32, n_iter: 4, seed: 1 });
  let seen: { progress: number; state: { sampling_step: number; sampling_steps: number; job_count: number }; current_image: string | null } | undefined;
  for (let i = 0; i < 400 && !seen?.current_image; i++) {
    const p = await get<NonNullable<typeof seen>>('progress');
    if (p.state.sampling_step > 0) seen = p;
    else await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(seen?.current_image, 'progress never showed a preview');
  assert.equal(seen.state.sampling_steps, 30);
  assert.ok(seen.progress > 0 && seen.progress < 1);
  // One preview pixel per latent: the built-in model's VAE scales by 2.
  const preview = png(seen.current_image);
  assert.deepEqual([preview.width, preview.height], [16, 16]);
  assert.deepEqual(await post('interrupt', {}), { status: 200, body: {} });
  const r = await running;
  assert.equal(r.status, 200);
  const info = JSON.parse(r.body.info) as { interrupted: boolean; all_seeds: number[] };
  assert.equal(info.interrupted, true);
  assert.ok(r.body.images.length < 4);
  assert.equal(info.all_seeds.length, r.body.images.length);
  // As in A1111, the flag stays up after the job, until the next one starts.
  const after = await get<{ state: { job_count: number; interrupted: boolean; skipped: boolean } }>('progress');
  assert.deepEqual([after.state.job_count, after.state.interrupted, after.state.skipped], [0, true, false]);
});

test('skip drops the image in progress and goes on with the next', async () => {
  const running = post('txt2img', { prompt: 'skip me', steps: 30, width: 32, height: 32, n_iter: 2, seed: 10 });
  for (let i = 0; i < 400; i++) {
    const p = await get<{ state: { sampling_step: number; job_no: number } }>('progress');
    if (p.state.sampling_step > 0 && p.state.job_no === 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  await post('skip', {});
  const r = await running;
  const info = JSON.parse(r.body.info) as { all_seeds: number[]; interrupted: boolean };
  assert.deepEqual(info.all_seeds, [11]);
  assert.equal(info.interrupted, false);
  // A new job cleared the last one's interrupt; the skip applied to the first image only.
  const after = await get<{ state: { interrupted: boolean; skipped: boolean } }>('progress');
  assert.deepEqual([after.state.interrupted, after.state.skipped], [false, false]);
});

test('concurrent requests wait their turn and are all answered', async () => {
  const rs = await Promise.all([1, 2, 3, 4].map((seed) => post('txt2img', { prompt: 'queue', steps: 2, width: 32, height: 32, seed })));
  assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 200]);
  assert.deepEqual(rs.map((r) => JSON.parse(r.body.info).seed), [1, 2, 3, 4]);
});

test('save_images writes A1111-named PNGs atomically; send_images false returns none', async () => {
  const r = await post('txt2img', { prompt: 'keep', steps: 2, width: 32, height: 32, seed: 5, batch_size: 2, save_images: true, send_images: false });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.images, []);
  const files = readdirSync(outputs).sort();
  assert.deepEqual(files, ['00000-5.png', '00001-6.png']);
  assert.match(readPngText(readFileSync(join(outputs, files[0]!))).parameters!, /Seed: 5,/);
});

test('a job that would not fit in memory is refused before it starts', async () => {
  const small = await server({ maxMemoryMiB: 256 });
  const r = await post<{ detail: { msg: string; type: string }[] }>('txt2img', { prompt: 'huge', width: 2048, height: 2048, steps: 2 }, small);
  assert.equal(r.status, 422);
  assert.equal(r.body.detail[0]!.type, 'value_error.memory');
  assert.match(r.body.detail[0]!.msg, /needs about .* GiB .* allows 0\.3 GiB per job \(--max-memory\)/);
  assert.equal((await post('txt2img', { prompt: 'fits', width: 32, height: 32, steps: 1 }, small)).status, 200);
  await small.close();
});

test('bodies over the limit are refused with 413', async () => {
  const r = await app.inject({ method: 'POST', url: '/sdapi/v1/txt2img', payload: { prompt: 'x'.repeat(33 * 2 ** 20) } });
  assert.equal(r.statusCode, 413);
  assert.match(r.json().detail, /over 32 MiB/);
});

test('img2img: plain and data-URL base64 (RGBA too), resize modes, inpainting mask; hires fix on txt2img', async () => {
  const rgba = Buffer.from(encode({ width: 40, height: 24, data: new Uint8Array(40 * 24 * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7) % 256)), channels: 4 })).toString('base64');
  const bad = await post<{ detail: { loc: (string | number)[] }[] }>('img2img', { init_images: ['bm90IGEgcG5n'], width: 32, height: 32 });
  assert.equal(bad.status, 422);
  assert.deepEqual(bad.body.detail[0]!.loc, ['body', 'init_images', 0]);
  for (const [init, resize_mode] of [[`data:image/png;base64,${rgba}`, 0], [rgba, 1], [rgba, 2]] as const) {
    const r = await post('img2img', { init_images: [init], resize_mode, denoising_strength: 0.5, width: 32, height: 48, steps: 4, seed: 1, sampler_name: 'Euler a' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.parameters.init_images, null);
    const p = png(r.body.images[0]!);
    assert.deepEqual([p.width, p.height], [32, 48]);
    assert.match(readPngText(Buffer.from(r.body.images[0]!, 'base64')).parameters!, /Denoising strength: 0.5/);
  }
  // Inpainting the left half only: the right half stays the (resized) original.
  const mask = Buffer.from(encode({ width: 32, height: 48, data: new Uint8Array(32 * 48).map((_, i) => (i % 32 < 16 ? 255 : 0)), channels: 1 })).toString('base64');
  const m = await post('img2img', { init_images: [rgba], mask, mask_blur: 0, inpainting_fill: 1, denoising_strength: 1, width: 32, height: 48, steps: 3, seed: 1 });
  assert.equal(m.status, 200, JSON.stringify(m.body));
  const original = fitImage(flattenImage(await decodeImage(Buffer.from(rgba, 'base64'))), 32, 48, 0);
  const out = png(m.body.images[0]!).data as Uint8Array;
  let kept = 0;
  for (let p = 0; p < 32 * 48; p++) if (p % 32 >= 16 && [0, 1, 2].every((c) => out[p * 3 + c] === original.data[p * 3 + c])) kept++;
  assert.equal(kept, 16 * 48);
  // A mask of neither the image's nor the output's shape is a mistake, named with the sizes.
  const square = Buffer.from(encode({ width: 16, height: 16, data: new Uint8Array(256).fill(255), channels: 1 })).toString('base64');
  const wrong = await post<{ detail: { loc: string[]; msg: string }[] }>('img2img', { init_images: [rgba], mask: square, width: 32, height: 48, steps: 2 });
  assert.equal(wrong.status, 422);
  assert.deepEqual(wrong.body.detail[0]!.loc, ['body', 'mask']);
  assert.match(wrong.body.detail[0]!.msg, /the mask is 16x16 but init_images\.0 is 40x24 and the output 32x48/);
  const hires = await post('txt2img', { prompt: 'a fox', width: 32, height: 32, steps: 3, enable_hr: true, hr_scale: 2, hr_upscaler: 'Latent', hr_second_pass_steps: 2, denoising_strength: 0.6, seed: 2 });
  assert.equal(hires.status, 200, JSON.stringify(hires.body));
  const hp = png(hires.body.images[0]!);
  assert.deepEqual([hp.width, hp.height], [64, 64]);
  const badScale = await post<{ detail: { loc: string[] }[] }>('txt2img', { prompt: 'x', width: 32, height: 32, steps: 2, enable_hr: true, hr_scale: 1.1 });
  assert.equal(badScale.status, 422);
  assert.deepEqual(badScale.body.detail[0]!.loc, ['body', 'hr_scale']);
});

test('extra-single-image upscales with Lanczos; png-info reads the parameters back', async () => {
  // Opaque grey, RGBA: a flat image stays flat at any scale.
  const rgba = new Uint8Array(16 * 12 * 4).map((_, i) => (i % 4 === 3 ? 255 : 128));
  const src = Buffer.from(encode({ width: 16, height: 12, data: rgba, channels: 4 })).toString('base64');
  const up = await post<{ image: string; html_info: string }>('extra-single-image', { image: src, upscaling_resize: 2, upscaler_1: 'Lanczos' });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  const out = png(up.body.image);
  assert.deepEqual([out.width, out.height], [32, 24]);
  assert.ok([...out.data].every((v) => v === 128), 'a flat image stays flat');

  const gen = await post('txt2img', { prompt: 'a "quoted", prompt', negative_prompt: 'dark', steps: 2, width: 32, height: 48, seed: 9, sampler_name: 'Euler' });
  const info = await post<{ info: string; parameters: Record<string, string> }>('png-info', { image: `data:image/png;base64,${gen.body.images[0]}` });
  assert.equal(info.status, 200);
  assert.equal(info.body.info, JSON.parse(gen.body.info).infotexts[0]);
  assert.equal(info.body.parameters.Prompt, 'a "quoted", prompt');
  assert.equal(info.body.parameters['Negative prompt'], 'dark');
  assert.equal(info.body.parameters.Steps, '2');
  assert.equal(info.body.parameters.Seed, '9');
  assert.equal(info.body.parameters.Sampler, 'Euler');
  assert.deepEqual([info.body.parameters['Size-1'], info.body.parameters['Size-2']], ['32', '48']);
});

test('list endpoints answer in A1111 shapes (the scripts offered too); features todo-sd lacks answer with empty lists', async () => {
  const loras = await get<{ name: string; path: string }[]>('loras');
  assert.deepEqual(loras.map((l) => l.name), ['film-grain']);
  assert.deepEqual((await get<{ name: string }[]>('schedulers')).map((s) => s.name), ['automatic', 'uniform', 'karras', 'sgm_uniform']);
  assert.deepEqual((await get<{ name: string }[]>('upscalers')).map((s) => s.name), ['None', 'Lanczos', 'Nearest']);
  assert.deepEqual(await get('embeddings'), { loaded: {}, skipped: {} });
  for (const empty of ['prompt-styles', 'face-restorers', 'realesrgan-models', 'hypernetworks', 'sd-vae', 'extensions']) assert.deepEqual(await get(empty), [], empty);
  assert.deepEqual(await get('scripts'), { txt2img: ['tiled diffusion'], img2img: ['sd upscale', 'tiled diffusion'] });
  const flags = await get<Record<string, unknown>>('cmd-flags');
  assert.equal(flags.ckpt_dir, modelsDir);
  const page = await app.inject({ method: 'GET', url: '/' });
  assert.equal(page.statusCode, 200);
  assert.match(page.body, /<title>todo-sd<\/title>/);
});

test('--api-auth: requests need one of the users', async () => {
  const locked = await server({ apiAuth: [{ user: 'ann', pass: 's3cret' }, { user: 'bob', pass: 'pw' }] });
  assert.equal((await locked.inject({ method: 'GET', url: '/sdapi/v1/samplers' })).statusCode, 401);
  const wrong = `Basic ${Buffer.from('ann:nope').toString('base64')}`;
  assert.equal((await locked.inject({ method: 'GET', url: '/sdapi/v1/samplers', headers: { authorization: wrong } })).statusCode, 401);
  const right = `Basic ${Buffer.from('bob:pw').toString('base64')}`;
  assert.equal((await locked.inject({ method: 'GET', url: '/sdapi/v1/samplers', headers: { authorization: right } })).statusCode, 200);
  await locked.close();
});
