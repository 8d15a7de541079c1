import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, createScheduler, StableDiffusion, writeRandomModel, type GenerateOptions, type Tensor } from '../src/index.js';
import { deepCacheFullSteps } from '../src/pipeline/deepcache.js';
import { strengthRun } from '../src/pipeline/strength.js';
import { mse } from '../src/bench/metrics.js';
import { fixture, relL2 } from './helpers.js';

let pipe: StableDiffusion;
before(async () => {
  pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
});
after(() => pipe.dispose());

/**
 * DeepCacheSDHelper's bookkeeping, transcribed: every U-Net call sets cur_timestep =
 * list(scheduler.timesteps).index(t), the first call of a run sets start_timestep, and
 * is_skip_step says "full" when (cur_timestep − start_timestep) % cache_interval == 0.
 */
function helperFullSteps(timesteps: readonly number[], run: readonly number[], interval: number): boolean[] {
  let start: number | null = null;
  return run.map((t) => {
    const cur = timesteps.indexOf(t);
    start ??= cur;
    return (cur - start) % interval === 0;
  });
}

test("which steps run the whole U-Net: the helper's uniform rule (PNDM's repeated timestep, img2img tails), the start fraction, Heun's step pairs", () => {
  const cfg = pipe.schedulerConfig;
  for (const [sampler, steps] of [['pndm', 10], ['ddim', 7], ['euler', 9], ['dpmpp-2m', 12]] as const) {
    const s = createScheduler(sampler, cfg);
    s.setTimesteps(steps);
    const all = s.timesteps;
    for (const interval of [1, 2, 3, 5]) {
      for (const run of [all, strengthRun(s, { sampler, rule: 'diffusers', steps, strength: 0.6, hires: false, numTrain: 1000 }).timesteps]) {
        const ours = deepCacheFullSteps({ interval, start: 0 }, all, run, 1);
        assert.deepEqual(ours, helperFullSteps(all, run, interval), `${sampler} ${steps} steps, interval ${interval}, ${run.length} evaluations`);
      }
      // start: the first ⌊start · steps⌋ steps whole, the helper's rule after them.
      for (const start of [0.3, 0.5, 1]) {
        const ours = deepCacheFullSteps({ interval, start }, all, all, 1);
        const whole = Math.floor(start * all.length);
        assert.deepEqual(ours, helperFullSteps(all, all, interval).map((f, i) => f || i < whole), `${sampler}, interval ${interval}, start ${start}`);
      }
    }
  }
  // PNDM repeats its second timestep: the helper's index finds the first one, so evaluation 2 shares evaluation 1's verdict.
  const pndm = createScheduler('pndm', cfg);
  pndm.setTimesteps(6);
  assert.equal(pndm.timesteps[1], pndm.timesteps[2]);
  assert.deepEqual(deepCacheFullSteps({ interval: 3, start: 0 }, pndm.timesteps, pndm.timesteps, 1), [true, false, false, true, false, false, true]);
  // Heun evaluates twice per step; a step (predictor + corrector) is whole or shallow as a pair.
  const heun = createScheduler('heun', cfg);
  heun.setTimesteps(4);
  assert.deepEqual(deepCacheFullSteps({ interval: 2, start: 0 }, heun.timesteps, heun.timesteps, 2), [true, true, false, false, true, true, false]);
  assert.deepEqual(deepCacheFullSteps({ interval: 3, start: 0.5 }, heun.timesteps, heun.timesteps, 2), [true, true, true, true, false, false, true]);
});

/** The final latents of a generation. */
async function latents(o: GenerateOptions, on = pipe): Promise<{ x: Tensor; r: Awaited<ReturnType<StableDiffusion['generate']>> }> {
  let x: Tensor | undefined;
  const r = await on.generate(o, { onStep: (s) => void (s.latents && (x = s.latents)) });
  return { x: x!, r };
}

const base: GenerateOptions = { prompt: 'a lighthouse on a cliff at dusk', width: 32, height: 32, steps: 8, seed: 11, sampler: 'ddim' };

test('DeepCache in the pipeline: interval 1 is the plain U-Net, interval 3 stays close to dense, a cache point deeper in the U-Net closer still', async () => {
  const dense = await latents(base);
  const one = await latents({ ...base, deepcache: { interval: 1 } });
  assert.ok(relL2(one.x.data, dense.x.data) <= 1e-6, `interval 1: ${relL2(one.x.data, dense.x.data)}`);
  assert.deepEqual(one.r.settings.passes[0]!.evaluations, { full: 8, shallow: 0, promptOnly: 0 });

  const three = await latents({ ...base, deepcache: { interval: 3 } });
  assert.deepEqual(three.r.settings.passes[0]!.evaluations, { full: 3, shallow: 5, promptOnly: 0 });
  assert.deepEqual(three.r.settings.passes[0]!.deepcache, { interval: 3, layer: 0, block: 0, start: 0 });
  const deep = await latents({ ...base, deepcache: { interval: 3, layer: 1, block: 1 } });
  const other = await pipe.generate({ ...base, seed: 12 });
  const denseImg = dense.r.images[0]!;
  const err = mse(three.r.images[0]!, denseImg);
  const errDeep = mse(deep.r.images[0]!, denseImg);
  // Not dense, but far closer to it than another seed's picture is.
  assert.ok(err > 0, 'cached steps change the picture');
  assert.ok(err < mse(other.images[0]!, denseImg) / 10, `DeepCache MSE ${err} vs another seed ${mse(other.images[0]!, denseImg)}`);
  assert.ok(errDeep < err, `a deeper cache point recomputes more: ${errDeep} < ${err}`);
});

test('DeepCache with ToDo (its dense switch) and ToMe, per pass in the hires fix, with Heun', async () => {
  const r = await pipe.generate({
    ...base,
    steps: 4,
    sampler: 'heun',
    attention: { method: 'todo', factor: 2, stopAt: 0.5 },
    deepcache: { interval: 2, start: 0.25 },
    hires: { scale: 2, steps: 4, denoise: 0.5, upscaler: 'latent', attention: { method: 'tome', ratio: 0.5 }, deepcache: { interval: 3, layer: 1, block: 0 } },
  });
  const [first, second] = r.settings.passes;
  // Heun, 4 steps: 7 evaluations; steps 0 (start) and 2 whole, as pairs.
  assert.deepEqual(first!.evaluations, { full: 4, shallow: 3, promptOnly: 0 });
  assert.deepEqual(second!.deepcache, { interval: 3, layer: 1, block: 0, start: 0 });
  assert.equal(second!.attention.method, 'tome');
  // The second pass runs 2 steps (denoise 0.5) = 3 evaluations: step 0 whole, step 1 shallow.
  assert.deepEqual(second!.evaluations, { full: 2, shallow: 1, promptOnly: 0 });
  const off = await pipe.generate({ ...base, steps: 2, deepcache: { interval: 2 }, hires: { scale: 2, steps: 2, denoise: 0.5, upscaler: 'latent', deepcache: false } });
  assert.equal(off.settings.passes[1]!.deepcache, undefined);
  assert.deepEqual(off.settings.passes[1]!.evaluations, { full: 1, shallow: 0, promptOnly: 0 });
});

test('bad DeepCache options fail before any work, naming the valid range', async () => {
  const cases: [GenerateOptions['deepcache'], RegExp][] = [
    [{ interval: 0 }, /interval must be an integer >= 1/],
    [{ interval: 2.5 }, /interval must be an integer >= 1/],
    [{ interval: 2, layer: 2 }, /layer 2 .*use 0 … 1/],
    [{ interval: 2, block: -1 }, /block -1 .*use 0 … 1/],
    [{ interval: 2, start: 1.5 }, /start must be a fraction of the steps in \[0, 1\]/],
  ];
  for (const [deepcache, message] of cases) await assert.rejects(pipe.generate({ ...base, deepcache }), message);
  await assert.rejects(pipe.generate({ ...base, hires: { scale: 2, denoise: 0.5, upscaler: 'latent', deepcache: { interval: 2, block: 3 } } }), /block 3/);
});

test('SDXL: DeepCache and NGMS with the added inputs (pooled text, time ids) halved on prompt-only calls', async () => {
  const xl = await StableDiffusion.load(fixture('sdxl-tiny'));
  try {
    const o: GenerateOptions = { prompt: 'a fox', negativePrompt: 'blurry', width: 64, height: 64, steps: 4, seed: 3, sampler: 'ddim', cfg: 5 };
    const dense = await xl.generate(o);
    const r = await xl.generate({ ...o, deepcache: { interval: 2, block: 1 }, sMinUncond: 100 });
    // Whole at calls 0 and 2; the shallow calls 1 and 3 are odd and below sigma 100: prompt-only.
    assert.deepEqual(r.settings.passes[0]!.evaluations, { full: 2, shallow: 2, promptOnly: 2 });
    const err = mse(r.images[0]!, dense.images[0]!);
    assert.ok(err > 0 && err < 0.05, `SDXL DeepCache + NGMS MSE ${err}`);
  } finally {
    await xl.dispose();
  }
});

test('DeepCache on a guidance-distilled U-Net (LCM): the shallow graph takes the guidance embedding too', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'todo-sd-deepcache-lcm-')), 'tiny-lcm');
  writeRandomModel(dir, 'tiny-lcm', { seed: 5 });
  const lcm = await StableDiffusion.load(dir);
  try {
    const o: GenerateOptions = { prompt: 'a fox', width: 32, height: 32, steps: 4, seed: 1, sampler: 'lcm', cfg: 8, sMinUncond: 100 };
    const dense = await latents(o, lcm);
    const one = await latents({ ...o, deepcache: { interval: 1 } }, lcm);
    assert.ok(relL2(one.x.data, dense.x.data) <= 1e-6);
    const r = await latents({ ...o, deepcache: { interval: 2 } }, lcm);
    // No negative half to skip: one pass per step, half of them shallow.
    assert.deepEqual(r.r.settings.passes[0]!.evaluations, { full: 2, shallow: 2, promptOnly: 0 });
    assert.ok(relL2(r.x.data, dense.x.data) > 0);
  } finally {
    await lcm.dispose();
  }
});

test("MultiDiffusion: each view batch keeps its own DeepCache feature", async () => {
  const o: GenerateOptions = { ...base, width: 64, height: 32, steps: 4, tiling: { window: 16, stride: 8, viewBatch: 1 } };
  const dense = await latents(o);
  const views = dense.r.settings.passes[0]!.views!;
  assert.equal(views, 3);
  const one = await latents({ ...o, deepcache: { interval: 1 } });
  assert.ok(relL2(one.x.data, dense.x.data) <= 1e-6, 'interval 1 over views = MultiDiffusion alone');
  const two = await latents({ ...o, deepcache: { interval: 2 } });
  // Every view batch runs whole on steps 0 and 2 and shallow on its own feature on steps 1 and 3.
  assert.deepEqual(two.r.settings.passes[0]!.evaluations, { full: 2 * views, shallow: 2 * views, promptOnly: 0 });
  const err = relL2(two.x.data, dense.x.data);
  assert.ok(err > 0 && err < 0.5, `DeepCache over views: ${err}`);
});
