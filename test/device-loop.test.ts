import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BUILTIN_MODEL_DIR, createScheduler, loadUNet, StableDiffusion } from '../src/index.js';
import { denoiseOnDevice } from '../src/pipeline/device-loop.js';
import { buildStepGraph, linearSchedule, stepCoefficients } from '../src/pipeline/step-graph.js';
import { serializeModel } from '../src/graph/serialize.js';
import { createSession, ort } from '../src/runtime/session.js';
import { relL2 } from './helpers.js';

const sd15 = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, clip_sample: false, set_alpha_to_one: false };

test('Euler and DDIM steps are linear (x\' = a·x + b·ε); multistep, ancestral and clipping samplers are not offered', () => {
  const euler = linearSchedule('euler', sd15, 10, {})!;
  const sched = createScheduler('euler', sd15);
  sched.setTimesteps(10);
  euler.forEach((s, i) => {
    assert.equal(s.timestep, sched.timesteps[i]);
    assert.ok(Math.abs(s.a - 1) < 1e-6);
    assert.ok(Math.abs(s.b - (sched.sigmas[i + 1]! - sched.sigmas[i]!)) < 1e-5 * sched.sigmas[i]!);
  });
  assert.equal(linearSchedule('ddim', sd15, 10, {})!.length, 10);
  assert.equal(linearSchedule('dpmpp-2m', sd15, 10, {}), null);
  assert.equal(linearSchedule('euler-a', sd15, 10, {}), null);
  assert.equal(linearSchedule('ddim', { ...sd15, clip_sample: true }, 10, {}), null);
  assert.equal(linearSchedule('lcm', sd15, 4, {}), null);
  // The spacing override reaches the device schedule.
  assert.deepEqual(linearSchedule('euler', sd15, 4, { timestepSpacing: 'trailing' })!.map((s) => s.timestep), [999, 749, 499, 249]);
});

test('the step graph equals guidance + the JavaScript scheduler step', async () => {
  const dims = [1, 4, 3, 3];
  const n = 36;
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 10);
  const pred = Float32Array.from({ length: 2 * n }, (_, i) => Math.cos(i * 1.3));
  const cfg = 7.5;
  for (const sampler of ['euler', 'ddim'] as const) {
    const schedule = linearSchedule(sampler, sd15, 5, {})!;
    const js = createScheduler(sampler, sd15);
    js.setTimesteps(5);
    const session = await createSession(serializeModel(buildStepGraph(dims, true)), undefined);
    let latents: Float32Array = x;
    for (const [i, s] of schedule.entries()) {
      js.scaleModelInput({ data: latents, dims }, s.timestep);
      const eps = pred.subarray(0, n).map((u, k) => u + cfg * (pred[n + k]! - u));
      const want = js.step({ data: eps, dims }, s.timestep, { data: latents, dims }).data;
      const out = await session.run({
        noise_pred: new ort.Tensor('float32', pred, [2, ...dims.slice(1)]),
        latents: new ort.Tensor('float32', latents, dims),
        coef: new ort.Tensor('float32', stepCoefficients(s, schedule[i + 1], cfg), [4]),
      });
      const got = out.latents_next!.data as Float32Array;
      assert.ok(relL2(got, want) < 1e-6, `${sampler} step ${i}: ${relL2(got, want)}`);
      const next = schedule[i + 1]?.inputScale ?? 1;
      const input = out.model_input_next!.data as Float32Array;
      assert.ok(relL2(input.subarray(n), got.map((v) => v * next)) < 1e-6 && relL2(input.subarray(0, n), input.subarray(n)) === 0);
      latents = want;
    }
    await session.release();
  }
});

test('the device loop gives the JavaScript loop\'s image on the CPU; samplers it cannot run fall back', async () => {
  const o = { prompt: 'a red house', width: 32, height: 32, steps: 5, seed: 3 };
  const js = await StableDiffusion.load(BUILTIN_MODEL_DIR, { deviceLoop: false });
  const dev = await StableDiffusion.load(BUILTIN_MODEL_DIR, { deviceLoop: true });
  for (const sampler of ['euler', 'ddim', 'dpmpp-2m'] as const) {
    const a = (await js.generate({ ...o, sampler })).images[0]!.data;
    const steps: number[] = [];
    const b = (await dev.generate({ ...o, sampler }, { onStep: (s) => s.phase === 'denoise' && steps.push(s.step) })).images[0]!.data;
    assert.ok(relL2(b, a) < 1e-3, `${sampler}: ${relL2(b, a)}`);
    assert.deepEqual(steps, [1, 2, 3, 4, 5]);
  }
  await js.dispose();
  await dev.dispose();
  const unet = await loadUNet(BUILTIN_MODEL_DIR);
  const none = await denoiseOnDevice({ unet, sampler: 'dpmpp-2m', schedulerConfig: sd15, karras: false, steps: 3, latents: { data: new Float32Array(64), dims: [1, 4, 4, 4] }, conditioning: { encoderHiddenStates: { data: new Float32Array(77 * 32), dims: [1, 77, 32] } }, cfg: 1, stopAt: 1 });
  assert.equal(none, null);
  await unet.dispose();
});
