/**
 * The few-step samplers against their references: LCMScheduler (diffusers 0.26) and
 * TCDScheduler (0.27) trajectories from the independent NumPy transcription in
 * scripts/fewstep-reference.py (test/data), the full-loop sums of diffusers' own scheduler
 * tests (their dummy sample and model, torch.manual_seed(0) noise), the documented timestep
 * schedules, trailing spacing as an override, and the errors that name the fix.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { TorchGenerator } from '../src/random/torch-randn.js';
import { createScheduler, type Scheduler, type SchedulerOptions } from '../src/scheduler/index.js';
import type { Tensor } from '../src/tensor.js';
import { relL2, repoRoot } from './helpers.js';

const f = Math.fround;
const dataDir = join(repoRoot, 'test', 'data');

interface ReferenceCase {
  name: string;
  scheduler: 'lcm' | 'tcd';
  config: object;
  steps: number;
  strength?: number;
  eta?: number;
}

/** The fixtures' model: eps = 0.3·tanh(x) + 0.01·(t/1000)·flip_w(x). */
function fixtureModel(x: Tensor, t: number): Tensor {
  const w = x.dims[x.dims.length - 1]!;
  const d = x.data;
  return { data: d.map((v, i) => 0.3 * Math.tanh(v) + 0.01 * (t / 1000) * d[i - (i % w) + (w - 1 - (i % w))]!), dims: x.dims };
}

/** Sets the schedule as a pipeline does: strength through setImg2ImgTimesteps. */
function schedule(s: Scheduler, steps: number, strength?: number): void {
  if (strength === undefined) s.setTimesteps(steps);
  else s.setImg2ImgTimesteps!(steps, strength);
}

describe('lcm / tcd vs the NumPy transcription of diffusers', () => {
  const cases = JSON.parse(readFileSync(join(dataDir, 'fewstep-reference.json'), 'utf8')) as ReferenceCase[];
  const file = SafetensorsFile.open(join(dataDir, 'fewstep-reference.safetensors'));
  for (const c of cases) {
    it(`${c.name}: timesteps, noise draws and trajectory within 1e-5`, () => {
      const traj = file.readFloat32(`${c.name}.trajectory`);
      const [n, ...dims] = file.info(`${c.name}.trajectory`).shape as [number, ...number[]];
      const per = traj.length / n;
      const noise = file.has(`${c.name}.noise`) ? file.readFloat32(`${c.name}.noise`) : new Float32Array(0);
      let draws = 0;
      const randn = (d: readonly number[]): Float32Array => {
        assert.deepEqual(d, dims);
        return noise.slice(draws * per, ++draws * per);
      };
      const s = createScheduler(c.scheduler, c.config, { randn, ...(c.eta !== undefined && { eta: c.eta }) });
      schedule(s, c.steps, c.strength);
      assert.deepEqual(s.timesteps, Array.from(file.readFloat32(`${c.name}.timesteps`)));
      let x: Tensor = { data: traj.slice(0, per), dims };
      s.timesteps.forEach((t, k) => {
        x = s.step(fixtureModel(s.scaleModelInput(x, t), t), t, x);
        const e = relL2(x.data, traj.subarray((k + 1) * per, (k + 2) * per));
        assert.ok(e <= 1e-5, `${c.name} after step ${k} (t=${t}): relative error ${e.toExponential(3)}`);
      });
      assert.equal(draws, noise.length / per, `${c.name}: noise draws`);
    });
  }
});

describe("diffusers' own scheduler tests (full loops)", () => {
  // tests/schedulers/test_schedulers.py: dummy_sample_deter [4, 3, 8, 8] and dummy_model.
  const dims = [4, 3, 8, 8];
  const sample = new Float32Array(768);
  for (let b = 0; b < 4; b++) {
    for (let c = 0; c < 3; c++) for (let p = 0; p < 64; p++) sample[(b * 3 + c) * 64 + p] = f((c * 256 + p * 4 + b) / 768);
  }
  const dummyModel = (x: Tensor, t: number): Tensor => ({ data: x.data.map((v) => f(f(v * t) / f(t + 1))), dims: x.dims });
  const config = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', prediction_type: 'epsilon' };

  function fullLoop(name: 'lcm' | 'tcd', steps: number): { sum: number; mean: number } {
    const generator = new TorchGenerator(0);
    const s = createScheduler(name, config, { randn: (d) => generator.randn(d), ...(name === 'tcd' && { eta: 0 }) });
    s.setTimesteps(steps);
    let x: Tensor = { data: sample, dims };
    for (const t of s.timesteps) x = s.step(dummyModel(x, t), t, x);
    const sum = x.data.reduce((a, v) => a + Math.abs(v), 0);
    return { sum, mean: sum / x.data.length };
  }

  it('LCM: one step 18.7097 / 0.0244, ten steps with torch.manual_seed(0) noise 197.7616 / 0.2575', () => {
    const one = fullLoop('lcm', 1);
    assert.ok(Math.abs(one.sum - 18.7097) < 1e-3 && Math.abs(one.mean - 0.0244) < 1e-3, JSON.stringify(one));
    const ten = fullLoop('lcm', 10);
    assert.ok(Math.abs(ten.sum - 197.7616) < 1e-3 && Math.abs(ten.mean - 0.2575) < 1e-3, JSON.stringify(ten));
  });

  it('TCD with eta 0: one step 29.8715 / 0.0389, ten steps 181.2040 / 0.2359', () => {
    const one = fullLoop('tcd', 1);
    assert.ok(Math.abs(one.sum - 29.8715) < 1e-3 && Math.abs(one.mean - 0.0389) < 1e-3, JSON.stringify(one));
    const ten = fullLoop('tcd', 10);
    assert.ok(Math.abs(ten.sum - 181.204) < 1e-3 && Math.abs(ten.mean - 0.2359) < 1e-3, JSON.stringify(ten));
  });
});

describe('few-step schedules', () => {
  it('lcm / tcd: steps picked evenly from the 50-step distillation schedule', () => {
    assert.deepEqual(ts('lcm', {}, 4), [999, 759, 499, 259]);
    assert.deepEqual(ts('tcd', {}, 4), [999, 759, 499, 259]);
    assert.deepEqual(ts('lcm', {}, 2), [999, 499]);
    // diffusers' test_inference_steps: the last timestep of 10, 25, 26 and 50 steps.
    for (const [last, steps] of [[99, 10], [39, 25], [39, 26], [19, 50]] as const) assert.equal(ts('lcm', {}, steps).at(-1), last);
    assert.deepEqual(ts('lcm', { original_inference_steps: 100 }, 4), [999, 749, 499, 249]);
  });

  it('trailing spacing as an override of the config (Euler, Euler a, DDIM, DPM++ 2M)', () => {
    const sd15 = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, timestep_spacing: 'leading', set_alpha_to_one: false };
    const trailing = { timestepSpacing: 'trailing' } as const;
    for (const name of ['euler', 'euler-a', 'ddim', 'dpmpp-2m', 'heun', 'unipc']) {
      assert.deepEqual(ts(name, sd15, 4, trailing), [999, 749, 499, 249], name);
      assert.deepEqual(ts(name, sd15, 4, { timestepSpacing: 'leading' }).slice(0, 1), [name === 'dpmpp-2m' || name === 'unipc' ? 801 : 751], name);
    }
    // Euler's initial sigma: the largest sigma itself under trailing, sqrt(σ² + 1) under leading.
    const euler = createScheduler('euler', sd15, trailing);
    euler.setTimesteps(4);
    assert.equal(euler.initNoiseSigma, euler.sigmas[0]);
    const lead = createScheduler('euler', sd15);
    lead.setTimesteps(4);
    assert.equal(lead.initNoiseSigma, f(Math.sqrt(f(f(lead.sigmas[0]! ** 2) + 1))));
  });
});

describe('few-step samplers refuse what does not fit, naming the fix', () => {
  it('steps, strength, prediction type, thresholding, eta, spacing, Karras', () => {
    assert.throws(() => ts('lcm', {}, 51), /51 steps exceed original_inference_steps 50.*use at most 50 steps \(4–8 is typical\)/);
    const s = createScheduler('lcm', {});
    assert.throws(() => s.setImg2ImgTimesteps!(8, 0.1), /strength 0.1 keeps 5 timesteps .* fewer than the 8 steps asked: use at most 5 steps or a strength of at least 0.16/);
    assert.throws(() => createScheduler('lcm', { prediction_type: 'flow' }), /LCM scheduler config: "prediction_type" is "flow"; accepted values: epsilon, sample, v_prediction/);
    assert.throws(() => createScheduler('lcm', { thresholding: true }), /"thresholding" = true is not supported/);
    assert.throws(() => createScheduler('tcd', { rescale_betas_zero_snr: true }), /rescale_betas_zero_snr with epsilon prediction divides by zero .* "v_prediction"/);
    assert.doesNotThrow(() => createScheduler('tcd', { rescale_betas_zero_snr: true, prediction_type: 'v_prediction' }));
    assert.throws(() => createScheduler('tcd', { original_inference_steps: 2000 }), /"original_inference_steps" 2000 exceeds num_train_timesteps 1000/);
    assert.throws(() => createScheduler('tcd', {}, { eta: 1.5 }), /eta \(gamma\) must be a number from 0 \(deterministic\) to 1/);
    assert.throws(() => createScheduler('euler-a', {}, { eta: 0.3 }), /eta \(TCD's gamma\) applies to the tcd sampler only/);
    assert.throws(() => createScheduler('lcm', {}, { timestepSpacing: 'trailing' }), /timestep spacing does not apply to the lcm sampler/);
    assert.throws(() => createScheduler('euler', {}, { timestepSpacing: 'even' as 'leading' }), /unknown timestep spacing "even"; use one of leading, trailing, linspace/);
    assert.throws(() => createScheduler('tcd', {}, { karras: true }), /Karras sigmas are not available for the tcd sampler/);
    const done = createScheduler('lcm', {});
    done.setTimesteps(1);
    const x = { data: new Float32Array(4), dims: [1, 4] };
    done.step(x, 999, x);
    assert.throws(() => done.step(x, 999, x), /all 1 steps are done/);
  });
});

/** The distinct timesteps of a schedule (Heun lists each but the first twice). */
function ts(name: string, config: object, steps: number, opts: SchedulerOptions = {}): number[] {
  const s = createScheduler(name, config, opts);
  s.setTimesteps(steps);
  return [...new Set(s.timesteps)];
}
