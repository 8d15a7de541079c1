/**
 * Schedulers against diffusers 0.26: fixture trajectories (ddim, euler, pndm), and, for what
 * the fixtures do not cover, values derived in this file from diffusers' formulas in float64.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { createScheduler, SAMPLER_NAMES, type Scheduler } from '../src/scheduler/index.js';
import type { Tensor } from '../src/tensor.js';
import { relL2 } from './helpers.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const fixtureDir = join(process.env.TODO_SD_SHARED ?? join(repoRoot, '..', 'shared'), 'fixtures', 'schedulers');

/** Stable Diffusion 1.x's scheduler_config.json (a PNDMScheduler config). */
const SD_CONFIG = {
  _class_name: 'PNDMScheduler',
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};
/** The fixtures' variant: leading spacing for every class (diffusers defaults Euler/DPM to linspace). */
const SD_LEADING = { ...SD_CONFIG, timestep_spacing: 'leading' };

const DIMS = [1, 4, 8, 8] as const;
const SIZE = 256;


function assertClose(ours: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(ours.length, ref.length, `${what}: length`);
  const e = relL2(ours, ref);
  assert.ok(e <= tol, `${what}: relative error ${e.toExponential(3)} > ${tol}`);
}

function assertEachClose(ours: readonly number[], ref: readonly number[], tol: number, what: string): void {
  assert.equal(ours.length, ref.length, `${what}: length`);
  ours.forEach((v, i) => {
    const r = ref[i]!;
    assert.ok(Math.abs(v - r) <= tol * Math.max(Math.abs(r), 1e-12), `${what}[${i}]: ${v} vs ${r}`);
  });
}

const t4 = (data: Float32Array): Tensor => ({ data, dims: DIMS });
const fill = (fn: (i: number) => number): Float64Array => Float64Array.from({ length: SIZE }, (_, i) => fn(i));
const X0 = fill((i) => 0.8 * Math.sin(0.37 * i + 0.1));
const EPS0 = fill((i) => 1.1 * Math.cos(1.3 * i + 0.2));

/** The fixtures' model: eps = 0.3·tanh(x̂) + 0.01·(t/1000)·flip_w(x̂). */
function fixtureModel(xh: Tensor, t: number): Tensor {
  const w = xh.dims[xh.dims.length - 1]!;
  const d = xh.data;
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) {
    const col = i % w;
    out[i] = 0.3 * Math.tanh(d[i]!) + 0.01 * (t / 1000) * d[i - col + (w - 1 - col)]!;
  }
  return { data: out, dims: xh.dims };
}

// ---- float64 references, written from diffusers' formulas -------------------------------------

function scaledLinearBetas(start: number, end: number, n: number): number[] {
  const a = Math.sqrt(start);
  const b = Math.sqrt(end);
  return Array.from({ length: n }, (_, i) => (a + ((b - a) * i) / (n - 1)) ** 2);
}

function cosineBetas(n: number): number[] {
  const ab = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  return Array.from({ length: n }, (_, i) => Math.min(1 - ab((i + 1) / n) / ab(i / n), 0.999));
}

/**
 * ᾱ_t = Π(1 − β). diffusers forms 1 − β and ᾱ in float32 (torch); near t = 0, where 1 − ᾱ is
 * small, those roundings move σ by about 1e-5, so the reference keeps them.
 */
function cumprod(betas: readonly number[]): number[] {
  let acc = 1;
  return betas.map((b) => Math.fround((acc *= Math.fround(1 - b))));
}

/** arXiv 2305.08891, Algorithm 1: shift and scale sqrt(ᾱ) so that ᾱ_T = 0. */
function zeroSnrAlphasCumprod(betas: readonly number[]): number[] {
  const s = cumprod(betas).map(Math.sqrt);
  const first = s[0]!;
  const last = s[s.length - 1]!;
  return s.map((v) => ((v - last) * first / (first - last)) ** 2);
}

const SD_AC = cumprod(scaledLinearBetas(0.00085, 0.012, 1000));
const SD_SIGMAS = SD_AC.map((a) => Math.sqrt((1 - a) / a));

/** Linear interpolation of SD_SIGMAS at a fractional timestep. */
function sigmaAt(t: number): number {
  const j = Math.min(Math.floor(t), 998);
  return SD_SIGMAS[j]! + (SD_SIGMAS[j + 1]! - SD_SIGMAS[j]!) * (t - j);
}

/** Karras et al. (2022) eq. (5), rho = 7. */
function karras(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const lo = sigmaMin ** (1 / 7);
  const hi = sigmaMax ** (1 / 7);
  return Array.from({ length: n }, (_, i) => (hi + (i / (n - 1)) * (lo - hi)) ** 7);
}

/** The fractional timestep whose log-sigma, interpolated linearly between timesteps, is log(sigma). */
function timestepOfSigma(sigma: number): number {
  const ls = Math.log(sigma);
  const logs = SD_SIGMAS.map(Math.log);
  let j = 0;
  while (j < logs.length - 2 && logs[j + 1]! <= ls) j++;
  return Math.min(Math.max(j + (ls - logs[j]!) / (logs[j + 1]! - logs[j]!), 0), 999);
}

// ---- fixtures ----------------------------------------------------------------------------------

interface FixtureCase {
  name: string;
  scheduler: string;
  config: object;
  steps: number;
  init_noise_sigma: number;
}

describe('schedulers vs diffusers fixtures', () => {
  it('fixture folder is present', () => {
    assert.ok(existsSync(join(fixtureDir, 'schedulers.json')), `missing ${fixtureDir}/schedulers.json (set TODO_SD_SHARED)`);
  });

  const cases: FixtureCase[] = existsSync(join(fixtureDir, 'schedulers.json'))
    ? (JSON.parse(readFileSync(join(fixtureDir, 'schedulers.json'), 'utf8')) as FixtureCase[])
    : [];
  for (const c of cases) {
    it(`${c.name}: timesteps, sigmas and trajectory within 1e-5`, () => {
      const file = SafetensorsFile.open(join(fixtureDir, 'schedulers.safetensors'));
      const s = createScheduler(c.scheduler, c.config);
      s.setTimesteps(c.steps);
      assert.deepEqual(s.timesteps, Array.from(file.readFloat32(`${c.name}.timesteps`)));
      // The float32 schedule is emulated op by op, so sigmas come out bit-identical to torch's.
      assert.equal(s.initNoiseSigma, c.init_noise_sigma);
      if (file.has(`${c.name}.sigmas`)) assert.deepEqual(s.sigmas, Array.from(file.readFloat32(`${c.name}.sigmas`)));
      const shape = file.info(`${c.name}.trajectory`).shape;
      assert.equal(shape[0], s.timesteps.length + 1);
      const per = shape.slice(1).reduce((a, b) => a * b, 1);
      const traj = file.readFloat32(`${c.name}.trajectory`);
      let x: Tensor = { data: traj.slice(0, per), dims: shape.slice(1) };
      s.timesteps.forEach((t, k) => {
        x = s.step(fixtureModel(s.scaleModelInput(x, t), t), t, x);
        assertClose(x.data, traj.subarray((k + 1) * per, (k + 2) * per), 1e-5, `${c.name} after step ${k} (t=${t})`);
      });
    });
  }
});

// ---- timesteps and sigmas ------------------------------------------------------------------------

describe('timestep spacing', () => {
  const ts = (name: string, config: object, steps: number): number[] => {
    const s = createScheduler(name, config);
    s.setTimesteps(steps);
    return s.timesteps;
  };

  it('ddim: leading (+steps_offset), trailing, linspace (round half to even)', () => {
    assert.deepEqual(ts('ddim', SD_CONFIG, 10), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    assert.deepEqual(ts('ddim', { ...SD_CONFIG, timestep_spacing: 'trailing' }, 10), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    assert.deepEqual(ts('ddim', { ...SD_CONFIG, timestep_spacing: 'trailing' }, 7), [999, 856, 713, 570, 428, 285, 142]);
    assert.deepEqual(ts('ddim', { ...SD_CONFIG, timestep_spacing: 'linspace' }, 10), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    // 999·i/6 hits 166.5 and 832.5, which NumPy rounds to even.
    assert.deepEqual(ts('ddim', { ...SD_CONFIG, timestep_spacing: 'linspace' }, 7), [999, 832, 666, 500, 333, 166, 0]);
  });

  it('pndm: PLMS repeats the second timestep; PRK warm-up uses half strides', () => {
    assert.deepEqual(ts('pndm', SD_CONFIG, 10), [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    assert.deepEqual(
      ts('pndm', { ...SD_CONFIG, skip_prk_steps: false, steps_offset: 0 }, 10),
      [900, 850, 850, 800, 800, 750, 750, 700, 700, 650, 650, 600, 600, 500, 400, 300, 200, 100, 0],
    );
  });

  it('euler: fractional linspace timesteps and interpolated sigmas', () => {
    const s = createScheduler('euler', { ...SD_CONFIG, timestep_spacing: 'linspace' });
    s.setTimesteps(7);
    const expected = [999, 832.5, 666, 499.5, 333, 166.5, 0];
    assert.deepEqual(s.timesteps, expected);
    assertEachClose(s.sigmas, [...expected.map(sigmaAt), 0], 1e-5, 'sigmas');
    // linspace and trailing start from the largest sigma itself, leading from sqrt(sigma² + 1).
    assertEachClose([s.initNoiseSigma], [SD_SIGMAS[999]!], 1e-5, 'init_noise_sigma');
    const lead = createScheduler('euler', SD_LEADING);
    lead.setTimesteps(10);
    assertEachClose([lead.initNoiseSigma], [Math.hypot(SD_SIGMAS[901]!, 1)], 1e-5, 'init_noise_sigma (leading)');
  });

  it('euler: trailing timesteps; linspace when the config names no spacing (class default)', () => {
    assert.deepEqual(ts('euler', SD_CONFIG, 4), [999, 666, 333, 0]);
    assert.deepEqual(ts('euler', { ...SD_CONFIG, timestep_spacing: 'trailing' }, 10), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  });

  it('dpmpp-2m: linspace / leading / trailing over steps + 1 points', () => {
    const lin = ts('dpmpp-2m', { ...SD_CONFIG, timestep_spacing: 'linspace' }, 20);
    assert.deepEqual(lin, [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50]);
    assert.deepEqual(ts('dpmpp-2m', { ...SD_CONFIG, timestep_spacing: 'linspace' }, 6), [999, 832, 666, 500, 333, 166]);
    assert.deepEqual(ts('dpmpp-2m', { ...SD_CONFIG, timestep_spacing: 'leading' }, 10), [901, 811, 721, 631, 541, 451, 361, 271, 181, 91]);
    assert.deepEqual(ts('dpmpp-2m', { ...SD_CONFIG, timestep_spacing: 'trailing' }, 10), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    // SD's config has no timestep_spacing: DPMSolverMultistepScheduler's default is linspace.
    assert.deepEqual(ts('dpmpp-2m', SD_CONFIG, 20), lin);
  });

  it('euler karras: rho-7 sigmas between the schedule ends, timesteps from log-sigma', () => {
    const s = createScheduler('euler', SD_LEADING, { karras: true });
    s.setTimesteps(10);
    const sig = karras(SD_SIGMAS[1]!, SD_SIGMAS[901]!, 10);
    assertEachClose(s.sigmas, [...sig, 0], 1e-5, 'sigmas');
    s.timesteps.forEach((t, i) => assert.ok(Math.abs(t - timestepOfSigma(sig[i]!)) < 1e-3, `timestep ${i}: ${t}`));
    // The config's use_karras_sigmas does the same; an explicit karras: false overrides it.
    const fromConfig = createScheduler('euler', { ...SD_LEADING, use_karras_sigmas: true });
    fromConfig.setTimesteps(10);
    assert.deepEqual(fromConfig.sigmas, s.sigmas);
    const off = createScheduler('euler', { ...SD_LEADING, use_karras_sigmas: true }, { karras: false });
    off.setTimesteps(10);
    assert.deepEqual(off.timesteps, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  });

  it('dpmpp-2m karras: whole training range, rounded timesteps', () => {
    const s = createScheduler('dpmpp-2m', SD_CONFIG, { karras: true });
    s.setTimesteps(10);
    const sig = karras(SD_SIGMAS[0]!, SD_SIGMAS[999]!, 10);
    assertEachClose(s.sigmas, [...sig, 0], 1e-5, 'sigmas');
    assert.deepEqual(s.timesteps, sig.map((v) => Math.round(timestepOfSigma(v))));
    assert.deepEqual(s.timesteps, [999, 916, 815, 687, 523, 327, 146, 41, 7, 0]);
  });

  it('dpmpp-2m: final_sigmas_type sigma_min ends on the smallest training sigma', () => {
    const s = createScheduler('dpmpp-2m', { ...SD_CONFIG, final_sigmas_type: 'sigma_min' });
    s.setTimesteps(5);
    assertEachClose([s.sigmas[5]!], [SD_SIGMAS[0]!], 1e-5, 'last sigma');
  });
});

// ---- trajectories of a model that is consistent with a fixed x0 ----------------------------------
// If the model always implies the same clean sample x0 and noise ε0, DDIM, PNDM, Euler and
// DPM-Solver steps all land exactly on x = α·x0 + σ·ε0 of the next noise level.

/** Runs the denoising loop; `expected(k)` gives the latents after step k. */
function runConsistent(
  s: Scheduler,
  x: Float64Array,
  model: (x: Float32Array, t: number, k: number) => ArrayLike<number>,
  expected: (k: number) => ArrayLike<number>,
  what: string,
): void {
  let cur: Tensor = t4(Float32Array.from(x));
  s.timesteps.forEach((t, k) => {
    const xh = s.scaleModelInput(cur, t);
    cur = s.step(t4(Float32Array.from(model(xh.data, t, k))), t, cur);
    assertClose(cur.data, expected(k), 1e-5, `${what}: step ${k} (t=${t})`);
  });
}

const mix = (a: number, b: number): Float64Array => X0.map((v, i) => a * v + b * EPS0[i]!);

describe('consistent-model trajectories (exact solutions)', () => {
  function ddimCase(what: string, config: object, steps: number, ac: number[], prediction: 'epsilon' | 'v_prediction' | 'sample'): void {
    it(what, () => {
      const s = createScheduler('ddim', { ...config, prediction_type: prediction });
      s.setTimesteps(steps);
      const stride = Math.floor(1000 / steps);
      const finalAc = (config as { set_alpha_to_one?: boolean }).set_alpha_to_one === false ? ac[0]! : 1;
      const acAt = (t: number): number => (t >= 0 ? ac[t]! : finalAc);
      const at = (t: number): Float64Array => mix(Math.sqrt(acAt(t)), Math.sqrt(1 - acAt(t)));
      runConsistent(
        s,
        at(s.timesteps[0]!),
        (x, t) => {
          const a = Math.sqrt(ac[t]!);
          const b = Math.sqrt(1 - ac[t]!);
          if (prediction === 'sample') return X0;
          if (prediction === 'epsilon') return x.map((v, i) => (v - a * X0[i]!) / b);
          return x.map((v, i) => a * ((v - a * X0[i]!) / b) - b * X0[i]!);
        },
        (k) => at(s.timesteps[k]! - stride),
        what,
      );
    });
  }
  ddimCase('ddim epsilon (SD config)', SD_CONFIG, 20, SD_AC, 'epsilon');
  ddimCase('ddim sample prediction, set_alpha_to_one', { ...SD_CONFIG, set_alpha_to_one: true }, 10, SD_AC, 'sample');
  // Leading spacing: DDIM steps back by ⌊1000/steps⌋, which other spacings' next timestep need not be.
  ddimCase('ddim v_prediction, squaredcos_cap_v2', { beta_schedule: 'squaredcos_cap_v2', clip_sample: false }, 12, cumprod(cosineBetas(1000)), 'v_prediction');
  ddimCase(
    'ddim v_prediction, rescale_betas_zero_snr, trailing (starts from pure noise)',
    { ...SD_CONFIG, rescale_betas_zero_snr: true, timestep_spacing: 'trailing' },
    10,
    zeroSnrAlphasCumprod(scaledLinearBetas(0.00085, 0.012, 1000)),
    'v_prediction',
  );
  ddimCase('ddim trained_betas (linear)', { trained_betas: Array.from({ length: 1000 }, (_, i) => 0.0001 + (0.0199 * i) / 999), clip_sample: false, steps_offset: 1 }, 8, cumprod(Array.from({ length: 1000 }, (_, i) => 0.0001 + (0.0199 * i) / 999)), 'epsilon');

  for (const [what, config] of [
    ['pndm PLMS', SD_CONFIG],
    ['pndm PRK warm-up + PLMS', { ...SD_CONFIG, skip_prk_steps: false }],
  ] as const) {
    it(what, () => {
      const s = createScheduler('pndm', config);
      s.setTimesteps(10);
      const at = (t: number): Float64Array => {
        const a = t >= 0 ? SD_AC[t]! : SD_AC[0]!;
        return mix(Math.sqrt(a), Math.sqrt(1 - a));
      };
      const prk = config.skip_prk_steps ? 0 : 12;
      // Where each step lands: PRK alternates half-stride moves and re-evaluations of the same
      // level; PLMS's second step re-does the first with an averaged slope.
      const landing = (k: number): number => {
        const t = s.timesteps[k]!;
        if (k < prk) return k % 2 ? t : t - 50;
        return prk === 0 && k === 1 ? t : t - 100;
      };
      runConsistent(s, at(s.timesteps[0]!), () => EPS0, (k) => at(landing(k)), what);
    });
  }

  it('pndm v_prediction: the first step converts v with the current alpha', () => {
    const s = createScheduler('pndm', { ...SD_CONFIG, prediction_type: 'v_prediction' });
    s.setTimesteps(10);
    const [a, b] = [Math.sqrt(SD_AC[901]!), Math.sqrt(1 - SD_AC[901]!)];
    const x = mix(a, b);
    const v = EPS0.map((e, i) => a * e - b * X0[i]!);
    const out = s.step(t4(Float32Array.from(v)), 901, t4(Float32Array.from(x)));
    assertClose(out.data, mix(Math.sqrt(SD_AC[801]!), Math.sqrt(1 - SD_AC[801]!)), 1e-5, 'x after step 0');
  });

  function sigmaCase(
    what: string,
    name: 'euler' | 'euler-a' | 'dpmpp-2m',
    config: object,
    opts: { karras?: boolean },
    sigmas: (s: Scheduler) => number[],
    prediction: 'epsilon' | 'v_prediction' | 'sample',
  ): void {
    it(what, () => {
      const noises: Float64Array[] = [];
      const randn = (dims: readonly number[]): Float32Array => {
        assert.deepEqual(dims, DIMS);
        const n = fill((i) => Math.sin(2.1 * i + noises.length));
        noises.push(n);
        return Float32Array.from(n);
      };
      const s = createScheduler(name, { ...config, prediction_type: prediction }, { ...opts, randn });
      const steps = 12;
      s.setTimesteps(steps);
      const sig = sigmas(s);
      assertEachClose(s.sigmas, sig, 1e-5, 'sigmas');
      const vpModel = name === 'dpmpp-2m';
      // State as x0 + σ·ε (Euler's variance-exploding space) or α·x0 + α·σ·ε (DPM's VP space).
      const alpha = (sg: number): number => (vpModel ? 1 / Math.hypot(sg, 1) : 1);
      // Euler a moves to x0 + σ_down·ε + σ_up·noise, so its ε changes from step to step.
      let eps = EPS0;
      const expectedAfter: Float64Array[] = [];
      for (let k = 0; k < steps; k++) {
        const [from, to] = [sig[k]!, sig[k + 1]!];
        if (name === 'euler-a') {
          const up = Math.sqrt((to ** 2 * (from ** 2 - to ** 2)) / from ** 2);
          const down = Math.sqrt(to ** 2 - up ** 2);
          const noise = fill((i) => Math.sin(2.1 * i + k));
          const offset = eps.map((v, i) => down * v + up * noise[i]!);
          expectedAfter.push(X0.map((v, i) => v + offset[i]!));
          if (to > 0) eps = offset.map((v) => v / to);
        } else {
          expectedAfter.push(X0.map((v, i) => alpha(to) * (v + to * eps[i]!)));
        }
      }
      let levelEps = EPS0;
      runConsistent(
        s,
        X0.map((v, i) => alpha(sig[0]!) * (v + sig[0]! * EPS0[i]!)),
        (xh, _t, k) => {
          const sg = sig[k]!;
          if (k > 0 && name === 'euler-a') levelEps = expectedAfter[k - 1]!.map((v, i) => (v - X0[i]!) / sg);
          // Euler's model input is scaled to VP space, DPM's already is: both are α·(x0 + σ·ε).
          const a = 1 / Math.hypot(sg, 1);
          const e = levelEps;
          assertClose(xh, X0.map((v, i) => a * (v + sg * e[i]!)), 1e-5, `model input at step ${k}`);
          if (prediction === 'sample') return X0;
          if (prediction === 'epsilon') return e;
          return e.map((v, i) => a * v - a * sg * X0[i]!);
        },
        (k) => expectedAfter[k]!,
        what,
      );
      if (name === 'euler-a') assert.equal(noises.length, steps, 'one noise draw per step');
    });
  }
  const eulerSigmas = (sp: number[]) => () => [...sp.map(sigmaAt), 0];
  const linspaceTs = Array.from({ length: 12 }, (_, i) => 999 - (999 * i) / 11);
  sigmaCase('euler epsilon (linspace)', 'euler', { ...SD_CONFIG, timestep_spacing: 'linspace' }, {}, eulerSigmas(linspaceTs), 'epsilon');
  sigmaCase('euler v_prediction (trailing)', 'euler', { ...SD_CONFIG, timestep_spacing: 'trailing' }, {}, (s) => [...s.timesteps.map(sigmaAt), 0], 'v_prediction');
  sigmaCase('euler karras', 'euler', SD_LEADING, { karras: true }, () => [...karras(SD_SIGMAS[1]!, SD_SIGMAS[914]!, 12), 0], 'epsilon');
  sigmaCase('euler-a epsilon with injected noise', 'euler-a', SD_LEADING, {}, eulerSigmas(Array.from({ length: 12 }, (_, i) => 914 - 83 * i)), 'epsilon');
  sigmaCase('euler-a v_prediction, karras', 'euler-a', SD_LEADING, { karras: true }, () => [...karras(SD_SIGMAS[1]!, SD_SIGMAS[914]!, 12), 0], 'v_prediction');
  sigmaCase('dpmpp-2m epsilon', 'dpmpp-2m', SD_CONFIG, {}, (s) => [...s.timesteps.map(sigmaAt), 0], 'epsilon');
  sigmaCase('dpmpp-2m v_prediction, karras', 'dpmpp-2m', SD_CONFIG, { karras: true }, () => [...karras(SD_SIGMAS[0]!, SD_SIGMAS[999]!, 12), 0], 'v_prediction');
  sigmaCase('dpmpp-2m sample prediction', 'dpmpp-2m', SD_CONFIG, {}, (s) => [...s.timesteps.map(sigmaAt), 0], 'sample');
});

// ---- DPM-Solver++(2M) with a nonlinear model, against a float64 transcription -------------------

/**
 * DPM-Solver++(2M) (arXiv 2211.01095, Algorithm 2) as diffusers runs it: data prediction
 * x0 = (x − σ_t·ε)/α_t; first order x ← (σ_t/σ_s)·x − α_t(e^{−h} − 1)·D0 on the first step and,
 * when `finalFirstOrder`, on the last; otherwise the midpoint update adds −½·α_t(e^{−h} − 1)·D1
 * (heun: +α_t((e^{−h} − 1)/h + 1)·D1) with D1 = (m0 − m1)/r0, r0 = h_prev/h.
 */
function dpmpp2mReference(
  sigmas: readonly number[],
  timesteps: readonly number[],
  x: Float64Array,
  o: { order: number; heun: boolean; finalFirstOrder: boolean },
): Float64Array[] {
  const vp = (sg: number) => {
    const alpha = 1 / Math.hypot(sg, 1);
    return { alpha, sigma: sg * alpha, lambda: Math.log(alpha) - Math.log(sg * alpha) };
  };
  const out: Float64Array[] = [];
  let prev: Float64Array | null = null;
  let prevLambda = 0;
  const n = timesteps.length;
  for (let k = 0; k < n; k++) {
    const s = vp(sigmas[k]!);
    const t = vp(sigmas[k + 1]!);
    const eps = fixtureModel({ data: Float32Array.from(x), dims: DIMS }, timesteps[k]!).data;
    const x0 = x.map((v, i) => (v - s.sigma * eps[i]!) / s.alpha);
    const h = t.lambda - s.lambda;
    const c = t.alpha * (Math.exp(-h) - 1);
    const firstOrder = o.order === 1 || k === 0 || (k === n - 1 && o.finalFirstOrder);
    const d1 = firstOrder ? null : x0.map((v, i) => (v - prev![i]!) / ((s.lambda - prevLambda) / h));
    const c1 = o.heun ? -t.alpha * ((Math.exp(-h) - 1) / h + 1) : 0.5 * c;
    x = x.map((v, i) => (t.sigma / s.sigma) * v - c * x0[i]! - (d1 ? c1 * d1[i]! : 0));
    out.push(x);
    prev = x0;
    prevLambda = s.lambda;
  }
  return out;
}

describe('dpmpp-2m second-order updates', () => {
  const midpoint = { order: 2, heun: false, finalFirstOrder: true };
  for (const [what, config, opts, steps, ref] of [
    ['10 steps', SD_CONFIG, {}, 10, midpoint],
    ['25 steps, karras', SD_CONFIG, { karras: true }, 25, midpoint],
    // With a nonzero final sigma, only lower_order_final (under 15 steps) makes the last step first order.
    ['sigma_min final, 10 steps', { ...SD_CONFIG, final_sigmas_type: 'sigma_min' }, {}, 10, midpoint],
    ['sigma_min final, 15 steps', { ...SD_CONFIG, final_sigmas_type: 'sigma_min' }, {}, 15, { ...midpoint, finalFirstOrder: false }],
    ['heun solver', { ...SD_CONFIG, solver_type: 'heun' }, {}, 12, { ...midpoint, heun: true }],
    ['solver_order 1', { ...SD_CONFIG, solver_order: 1 }, {}, 8, { ...midpoint, order: 1 }],
  ] as const) {
    it(`matches the DPM-Solver++(2M) recurrence (${what})`, () => {
      const s = createScheduler('dpmpp-2m', config, opts);
      s.setTimesteps(steps);
      const start = fill((i) => 1.2 * Math.sin(0.9 * i));
      const expected = dpmpp2mReference(s.sigmas, s.timesteps, start, ref);
      let x: Tensor = t4(Float32Array.from(start));
      s.timesteps.forEach((t, k) => {
        x = s.step(fixtureModel(s.scaleModelInput(x, t), t), t, x);
        assertClose(x.data, expected[k]!, 1e-5, `step ${k}`);
      });
    });
  }
});

// ---- errors ------------------------------------------------------------------------------------

describe('scheduler errors', () => {
  it('unknown sampler names the valid ones', () => {
    assert.throws(() => createScheduler('dpmpp-3m', SD_CONFIG), /unknown sampler "dpmpp-3m".*ddim, pndm, euler, euler-a, dpmpp-2m, dpmpp-2m-sde, heun, lms, unipc/);
  });

  it('karras is refused for ddim and pndm', () => {
    for (const name of ['ddim', 'pndm']) assert.throws(() => createScheduler(name, SD_CONFIG, { karras: true }), /Karras sigmas are not available/);
  });

  it('steps must be an integer >= 1 and at most num_train_timesteps', () => {
    for (const name of SAMPLER_NAMES) {
      const s = createScheduler(name, SD_CONFIG);
      for (const bad of [0, -3, 2.5, NaN]) assert.throws(() => s.setTimesteps(bad), /integer >= 1/, `${name} ${bad}`);
      assert.throws(() => s.setTimesteps(1001), /exceed the 1000 training timesteps/);
    }
  });

  it('bad config values are named with the accepted ones', () => {
    assert.throws(
      () => createScheduler('euler', { ...SD_CONFIG, beta_schedule: 'cosine' }),
      /"beta_schedule" is "cosine"; accepted values: linear, scaled_linear, squaredcos_cap_v2/,
    );
    assert.throws(() => createScheduler('ddim', { ...SD_CONFIG, prediction_type: 'x0' }), /"prediction_type" is "x0"; accepted values: epsilon, sample, v_prediction/);
    assert.throws(() => createScheduler('pndm', { ...SD_CONFIG, timestep_spacing: 'even' }), /"timestep_spacing" is "even"; accepted values: leading, trailing, linspace/);
    assert.throws(() => createScheduler('euler-a', { ...SD_CONFIG, prediction_type: 'sample' }), /accepted values: epsilon, v_prediction/);
    assert.throws(() => createScheduler('ddim', { ...SD_CONFIG, thresholding: true }), /"thresholding" = true is not supported/);
    assert.throws(() => createScheduler('dpmpp-2m', { ...SD_CONFIG, solver_order: 3 }), /"solver_order" = 3 is not supported/);
    assert.throws(() => createScheduler('unipc', { ...SD_CONFIG, solver_type: 'bh3' }), /"solver_type" is "bh3"; accepted values: bh1, bh2/);
    assert.throws(() => createScheduler('unipc', { ...SD_CONFIG, disable_corrector: 'all' }), /"disable_corrector" must be a list of step indices/);
    assert.throws(() => createScheduler('heun', { ...SD_CONFIG, clip_sample: true }), /"clip_sample" = true is not supported/);
    assert.throws(() => createScheduler('lms', { ...SD_CONFIG, prediction_type: 'sample' }), /LMS scheduler config: "prediction_type" is "sample"/);
    assert.throws(() => createScheduler('ddim', { ...SD_CONFIG, beta_start: '0.1' }), /"beta_start" must be a finite number/);
  });

  it('stepping needs setTimesteps and stops at the end of the schedule', () => {
    const x = t4(new Float32Array(SIZE));
    for (const name of SAMPLER_NAMES) {
      const s = createScheduler(name, SD_CONFIG);
      assert.throws(() => s.step(x, 1, x), /setTimesteps/, name);
      s.setTimesteps(2);
      for (const t of s.timesteps) s.step(x, t, x);
      if (name !== 'ddim') assert.throws(() => s.step(x, s.timesteps[0]!, x), /steps are done/, name);
    }
  });

  it('model output and sample shapes must agree', () => {
    const s = createScheduler('euler', SD_CONFIG);
    s.setTimesteps(5);
    assert.throws(() => s.step({ data: new Float32Array(4), dims: [4] }, s.timesteps[0]!, t4(new Float32Array(SIZE))), /differ from sample dims/);
  });
});
