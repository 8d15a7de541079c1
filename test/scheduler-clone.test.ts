/**
 * Scheduler.clone(): diffusers' panorama pipeline keeps a `copy.deepcopy(scheduler.__dict__)`
 * per view, so each view's multistep history (DPM-Solver's and UniPC's past outputs, PNDM's
 * ets, Heun's half step, the step index) is its own. Checked as identities: a clone continues
 * exactly as the original would, stepping one never moves the other, and views stepped in turn
 * through clones equal each view run alone on a fresh scheduler.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cloneState } from '../src/scheduler/common.js';
import { createScheduler, SAMPLER_NAMES, type SamplerName, type Scheduler } from '../src/scheduler/index.js';
import type { Tensor } from '../src/tensor.js';
import { sharedDir } from './helpers.js';

/** Stable Diffusion 1.x's scheduler config (PNDM, skip_prk_steps), as tiny-photo ships it. */
const SD = JSON.parse(readFileSync(join(sharedDir, 'models', 'tiny-photo', 'scheduler', 'scheduler_config.json'), 'utf8')) as object;
const DIMS = [1, 2, 3, 4];
const STEPS = 8;

/** A stream of deterministic pseudo-normal numbers (the noise source of euler-a and the SDE sampler). */
function counterRandn(): (dims: readonly number[]) => Float32Array {
  let k = 0;
  return (dims) => Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => Math.sin(++k * 12.9898) * 0.8);
}

/** A fake model that depends on the sample and the timestep, so every history term matters. */
function model(x: Tensor, t: number, salt: number): Tensor {
  return { data: x.data.map((v, i) => Math.fround(0.6 * v + 0.1 * Math.cos(i + t / 97 + salt))), dims: x.dims };
}

function start(salt: number): Tensor {
  return { data: Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 1.7 + salt)), dims: DIMS };
}

function make(sampler: SamplerName): Scheduler {
  const s = createScheduler(sampler, SD, { randn: counterRandn() });
  s.setTimesteps(STEPS);
  return s;
}

/** One model evaluation and scheduler step, as the pipeline's loop does. */
function advance(s: Scheduler, x: Tensor, t: number, salt: number): Tensor {
  return s.step(model(s.scaleModelInput(x, t), t, salt), t, x);
}

/** The trajectory of one run on its own: the latents after every entry of the schedule. */
function trajectory(s: Scheduler, salt: number): Float32Array[] {
  let x = start(salt);
  const out: Float32Array[] = [];
  for (const t of s.timesteps) {
    x = advance(s, x, t, salt);
    out.push(x.data);
  }
  return out;
}

// The samplers that draw noise (from one stream, shared by clones) are checked apart.
const STOCHASTIC = ['euler-a', 'dpmpp-2m-sde', 'lcm', 'tcd'] as const;
const DETERMINISTIC = SAMPLER_NAMES.filter((n) => !(STOCHASTIC as readonly string[]).includes(n));

describe('Scheduler.clone', () => {
  for (const sampler of DETERMINISTIC) {
    it(`${sampler}: a clone taken mid-run continues exactly as the original, and stepping it leaves the original alone`, () => {
      const reference = trajectory(make(sampler), 0);
      const s = make(sampler);
      let x = start(0);
      const ts = s.timesteps;
      const at = 3;
      let clone: Scheduler | undefined;
      let cx: Tensor | undefined;
      for (const [i, t] of ts.entries()) {
        if (i === at) {
          clone = s.clone();
          cx = x;
        }
        x = advance(s, x, t, 0);
        assert.deepEqual(x.data, reference[i], `original, entry ${i}`);
        // The clone steps on other data between the original's steps: the original must not notice.
        if (clone && i < ts.length - 1) advance(clone.clone(), start(9), ts[i + 1]!, 5);
      }
      for (const [i, t] of ts.entries()) {
        if (i < at) continue;
        cx = advance(clone!, cx!, t, 0);
        assert.deepEqual(cx.data, reference[i], `clone, entry ${i}`);
      }
    });
  }

  for (const sampler of ['dpmpp-2m', 'unipc', 'pndm', 'heun', 'lms'] as const) {
    it(`${sampler}: views stepped in turn through per-view clones equal each view run alone`, () => {
      const salts = [0, 1, 2];
      const alone = salts.map((salt) => trajectory(make(sampler), salt));
      const base = make(sampler);
      const states = salts.map(() => base.clone());
      const xs = salts.map((salt) => start(salt));
      for (const [i, t] of base.timesteps.entries()) {
        for (const [v, salt] of salts.entries()) {
          xs[v] = advance(states[v]!, xs[v]!, t, salt);
          assert.deepEqual(xs[v]!.data, alone[v]![i], `view ${v}, entry ${i}`);
        }
      }
    });
  }

  for (const sampler of STOCHASTIC) {
    it(`${sampler}: clones share the noise source, so two views stepped in turn equal the two as one batch (diffusers' view_batch_size)`, () => {
      const base = make(sampler);
      const views = [base.clone(), base.clone()];
      const xs = [start(0), start(1)];
      const batched = make(sampler);
      let both: Tensor = { data: Float32Array.from([...xs[0]!.data, ...xs[1]!.data]), dims: [2, ...DIMS.slice(1)] };
      for (const t of base.timesteps) {
        for (const v of [0, 1]) xs[v] = advance(views[v]!, xs[v]!, t, 0);
        // The fake model is elementwise in the flattened index, so the batch gets each view's own input.
        const eps: Tensor = { data: Float32Array.from([...model(batched.scaleModelInput({ data: both.data.subarray(0, 24), dims: DIMS }, t), t, 0).data, ...model(batched.scaleModelInput({ data: both.data.subarray(24), dims: DIMS }, t), t, 0).data]), dims: both.dims };
        both = batched.step(eps, t, both);
        assert.deepEqual(Float32Array.from([...xs[0]!.data, ...xs[1]!.data]), both.data, `timestep ${t}`);
      }
    });
  }

  it('refuses state it cannot copy faithfully', () => {
    class Holder {
      history = new Map<number, number>();
    }
    assert.throws(() => cloneState(new Holder()), /cannot copy "history" \(a Map\)/);
  });
});
