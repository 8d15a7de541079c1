import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StableDiffusion, type GenerateOptions, type Tensor } from '../src/index.js';
import { createServer } from '../src/server/app.js';
import { ModelRegistry } from '../src/server/models.js';
import { LocalQueue } from '../src/server/queue-local.js';
import { JobRunner } from '../src/server/runner.js';
import { controlNetModels } from './controlnet-models.js';
import { relL2, runCli } from './helpers.js';

const m = controlNetModels();
const stripes = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => ((i / 3) % 32 < 16 ? 30 : 220)) };

/** Runs `run` with the batch of every call of `forward` on `model` recorded. */
async function batches<T>(model: { forward: (x: Tensor, ...rest: never[]) => Promise<Tensor> }, run: () => Promise<T>): Promise<{ seen: number[]; result: T }> {
  const seen: number[] = [];
  const forward = model.forward;
  model.forward = (x: Tensor, ...rest: never[]) => {
    seen.push(x.dims[0]!);
    return forward.call(model, x, ...rest);
  };
  try {
    return { seen, result: await run() };
  } finally {
    model.forward = forward;
  }
}

test('batchCondUncond false: a guided step runs its halves as two calls of the batch, U-Net and ControlNet alike, and predicts what one batch does', async () => {
  const pipe = await StableDiffusion.load(m.tiny);
  const cn = await pipe.loadControlNet(m.cn);
  const base: GenerateOptions = { prompt: 'a cat', negativePrompt: 'blurry', width: 32, height: 32, steps: 3, seed: 4, batch: 2, sampler: 'ddim', cfg: 7, controlnets: [{ model: cn, image: stripes }] };
  const final = async (o: GenerateOptions): Promise<{ latents: Float32Array; unet: number[]; controlnet: number[] }> => {
    let last: Float32Array | undefined;
    const c = await batches(cn as never, () => batches(pipe.unet as never, () => pipe.generate(o, { onStep: (s) => void (s.latents && (last = s.latents.data.slice())) })));
    assert.equal(c.result.result.settings.batchCondUncond, o.batchCondUncond ?? true);
    return { latents: last!, unet: c.result.seen, controlnet: c.seen };
  };
  const one = await final(base);
  const two = await final({ ...base, batchCondUncond: false });
  assert.deepEqual(one.unet, [4, 4, 4]);
  assert.deepEqual(one.controlnet, [4, 4, 4]);
  assert.deepEqual(two.unet, [2, 2, 2, 2, 2, 2]);
  assert.deepEqual(two.controlnet, [2, 2, 2, 2, 2, 2]);
  assert.ok(relL2(two.latents, one.latents) < 1e-5, `two calls vs one batch: ${relL2(two.latents, one.latents)}`);
  // Without guidance there is one half: one call either way.
  assert.deepEqual((await final({ ...base, cfg: 1, batchCondUncond: false })).unet, [2, 2, 2]);
  await assert.rejects(pipe.generate({ ...base, batchCondUncond: 'no' as never }), /batchCondUncond must be true or false; got "no"/);
  await pipe.dispose();
});

test("the server takes A1111's batch_cond_uncond setting (options and override_settings) to the pipeline", async () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-batch-cond-'));
  mkdirSync(join(root, 'models'));
  const registry = new ModelRegistry(join(root, 'models'));
  const app = await createServer({ registry, queue: new LocalQueue(new JobRunner(registry)), outputsDir: join(root, 'outputs') });
  const asked: (boolean | undefined)[] = [];
  const generate = StableDiffusion.prototype.generate;
  StableDiffusion.prototype.generate = function (this: StableDiffusion, o, cb) {
    asked.push(o.batchCondUncond);
    return generate.call(this, o, cb);
  };
  try {
    const request = { prompt: 'a red barn', steps: 2, width: 32, height: 32, seed: 5 };
    const post = async (payload: object): Promise<number> => (await app.inject({ method: 'POST', url: '/sdapi/v1/txt2img', payload })).statusCode;
    assert.equal(await post(request), 200);
    assert.equal(await post({ ...request, override_settings: { batch_cond_uncond: false } }), 200);
    assert.equal((await app.inject({ method: 'POST', url: '/sdapi/v1/options', payload: { batch_cond_uncond: false } })).statusCode, 200);
    assert.equal(await post(request), 200);
    assert.equal(await post({ ...request, override_settings: { batch_cond_uncond: 'no' } }), 422);
    assert.deepEqual(asked, [true, false, false]);
  } finally {
    StableDiffusion.prototype.generate = generate;
    await app.close();
  }
});

test('the CLI: --no-batch-cond-uncond reaches the settings it reports', () => {
  const dir = mkdtempSync(join(tmpdir(), 'todo-sd-batch-cond-cli-'));
  const r = runCli(dir, 'generate', '--prompt', 'a cat', '--width', '32', '--height', '32', '--steps', '2', '--no-batch-cond-uncond', '--json', '--out', join(dir, 'a.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { batchCondUncond: boolean }).batchCondUncond, false);
});
