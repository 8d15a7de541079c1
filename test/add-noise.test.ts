import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createScheduler, SAMPLER_NAMES } from '../src/index.js';
import { relL2 } from './helpers.js';

// SD's schedule (scaled_linear 0.00085 → 0.012, 1000 steps, leading, offset 1) and diffusers'
// add_noise formulas, computed here in float64 from scratch.
const config = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000, steps_offset: 1, timestep_spacing: 'leading', skip_prk_steps: true, set_alpha_to_one: false, clip_sample: false };
const alphasCumprod: number[] = [];
for (let i = 0, prod = 1; i < 1000; i++) {
  const beta = (Math.sqrt(0.00085) + (i / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2;
  prod *= 1 - beta;
  alphasCumprod.push(prod);
}

const x0 = { data: Float32Array.from({ length: 32 }, (_, i) => Math.cos(i)), dims: [1, 2, 4, 4] };
const noise = { data: Float32Array.from({ length: 32 }, (_, i) => Math.sin(3 * i)), dims: [1, 2, 4, 4] };

for (const name of SAMPLER_NAMES) {
  test(`${name}: add_noise at the img2img start matches diffusers' formula`, () => {
    const s = createScheduler(name, config);
    s.setTimesteps(10);
    const t = s.timesteps[4]!;
    const got = s.addNoise(x0, noise, t).data;
    let want: number[];
    if (['ddim', 'pndm', 'lcm', 'tcd'].includes(name)) {
      const a = alphasCumprod[t]!;
      want = Array.from(x0.data, (v, i) => Math.sqrt(a) * v + Math.sqrt(1 - a) * noise.data[i]!);
    } else {
      // The sigma at t's position, from the training schedule: sqrt((1 − ᾱ)/ᾱ).
      const sigma = s.sigmas[4]!;
      assert.ok(Math.abs(sigma - Math.sqrt((1 - alphasCumprod[t]!) / alphasCumprod[t]!)) / sigma < 1e-5);
      // The multistep solvers (DPM-Solver, UniPC) work in VP form: α·x0 + α·σ·noise.
      const alpha = ['dpmpp-2m', 'dpmpp-2m-sde', 'unipc'].includes(name) ? 1 / Math.sqrt(sigma * sigma + 1) : 1;
      want = Array.from(x0.data, (v, i) => alpha * v + alpha * sigma * noise.data[i]!);
    }
    assert.ok(relL2(got, want) < 1e-6, `rel ${relL2(got, want)}`);
    assert.throws(() => s.addNoise(x0, { data: new Float32Array(3), dims: [3] }, t), /dims/);
  });
}
