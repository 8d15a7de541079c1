/**
 * The samplers added after the first five (heun, lms, unipc, dpmpp-2m-sde) and the sampler
 * names. No diffusers trajectories exist for them in the fixtures, so the tests check what can
 * be derived independently: the schedules from diffusers' formulas in float64, exactness where
 * the model is exact, the order of accuracy on an ODE with a closed-form solution, and
 * float64 transcriptions of the update rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createScheduler, type SamplerName, type Scheduler } from '../src/scheduler/index.js';
import { lmsCoefficients } from '../src/scheduler/lms.js';
import { A1111_SAMPLERS, a1111SamplerName, resolveSampler } from '../src/scheduler/names.js';
import type { Tensor } from '../src/tensor.js';
import { relL2 } from './helpers.js';

const SD = {
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
  steps_offset: 1,
  clip_sample: false,
  set_alpha_to_one: false,
};
const LEADING = { ...SD, timestep_spacing: 'leading' };

const SD_AC = (() => {
  const a = Math.sqrt(0.00085);
  const b = Math.sqrt(0.012);
  let acc = 1;
  return Array.from({ length: 1000 }, (_, i) => (acc *= 1 - (a + ((b - a) * i) / 999) ** 2));
})();
const SD_SIGMAS = SD_AC.map((a) => Math.sqrt((1 - a) / a));
const sigmaAt = (t: number): number => {
  const j = Math.min(Math.floor(t), 998);
  return SD_SIGMAS[j]! + (SD_SIGMAS[j + 1]! - SD_SIGMAS[j]!) * (t - j);
};
const karras = (lo: number, hi: number, n: number): number[] =>
  Array.from({ length: n }, (_, i) => (hi ** (1 / 7) + (i / (n - 1)) * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7);

function near(ours: readonly number[], ref: readonly number[], tol: number, what: string): void {
  assert.equal(ours.length, ref.length, `${what}: length`);
  ours.forEach((v, i) => assert.ok(Math.abs(v - ref[i]!) <= tol * Math.max(1, Math.abs(ref[i]!)), `${what}[${i}]: ${v} vs ${ref[i]}`));
}

const DIMS = [1, 4, 4, 4];
const N = 64;
const X0 = Float64Array.from({ length: N }, (_, i) => 0.8 * Math.sin(0.37 * i + 0.1));
const EPS = Float64Array.from({ length: N }, (_, i) => 1.1 * Math.cos(1.3 * i + 0.2));
const t4 = (d: ArrayLike<number>): Tensor => ({ data: Float32Array.from(d), dims: DIMS });
/** Samplers working on VP latents (x = α·(x0 + σ·ε)); the others work on x0 + σ·ε. */
const VP = new Set<SamplerName>(['unipc', 'dpmpp-2m', 'dpmpp-2m-sde']);
const alphaOf = (name: SamplerName, sigma: number): number => (VP.has(name) ? 1 / Math.hypot(sigma, 1) : 1);

/** Runs the loop as the pipeline does: one model call per timestep, at sigma index k. */
function run(s: Scheduler, x: Float64Array, model: (xh: Float32Array, sigma: number) => ArrayLike<number>): Float32Array {
  let cur = t4(x);
  s.timesteps.forEach((t, k) => {
    const xh = s.scaleModelInput(cur, t);
    cur = s.step(t4(model(xh.data, s.sigmas[k]!)), t, cur);
  });
  return cur.data;
}

describe('new sampler schedules follow diffusers formulas', () => {
  it('heun: leading timesteps, each after the first twice; sigmas interleaved the same way, then 0', () => {
    const s = createScheduler('heun', LEADING);
    s.setTimesteps(10);
    const ts = Array.from({ length: 10 }, (_, i) => 901 - 100 * i);
    assert.deepEqual(s.timesteps, [ts[0], ...ts.slice(1).flatMap((t) => [t, t])]);
    const sg = ts.map(sigmaAt);
    near(s.sigmas, [sg[0]!, ...sg.slice(1).flatMap((v) => [v, v]), 0], 1e-5, 'sigmas');
    assert.equal(s.order, 2);
    assert.ok(Math.abs(s.initNoiseSigma - Math.sqrt(sg[0]! ** 2 + 1)) < 1e-4);
  });

  it('lms: Euler\'s sigmas (leading) and Karras between their extremes', () => {
    const s = createScheduler('lms', LEADING);
    s.setTimesteps(10);
    near(s.sigmas, [...Array.from({ length: 10 }, (_, i) => sigmaAt(901 - 100 * i)), 0], 1e-5, 'sigmas');
    const k = createScheduler('lms', { ...LEADING, use_karras_sigmas: true });
    k.setTimesteps(10);
    near(k.sigmas, [...karras(sigmaAt(1), sigmaAt(901), 10), 0], 1e-5, 'karras sigmas');
  });

  it('unipc: linspace over steps + 1, last sigma the smallest training sigma; Karras over the training range', () => {
    const s = createScheduler('unipc', SD);
    s.setTimesteps(10);
    const ts = Array.from({ length: 11 }, (_, i) => Math.round((999 * i) / 10)).reverse().slice(0, -1);
    assert.deepEqual(s.timesteps, ts);
    near(s.sigmas, [...ts.map(sigmaAt), SD_SIGMAS[0]!], 1e-5, 'sigmas');
    assert.equal(s.initNoiseSigma, 1);
    const k = createScheduler('unipc', SD, { karras: true });
    k.setTimesteps(8);
    const ks = karras(SD_SIGMAS[0]!, SD_SIGMAS[999]!, 8);
    near(k.sigmas, [...ks, ks[7]!], 1e-5, 'karras sigmas');
    assert.equal(k.timesteps[0], 999);
  });

  it('lms coefficients integrate the Lagrange basis: they sum to the step and match Gauss-Legendre quadrature', () => {
    const sig = [14.6, 9.7, 6.1, 3.9, 2.2, 1.1];
    for (let i = 0; i < 5; i++) {
      const order = Math.min(i + 1, 4);
      const c = lmsCoefficients(sig, i, order);
      assert.ok(Math.abs(c.reduce((a, b) => a + b, 0) - (sig[i + 1]! - sig[i]!)) < 1e-12);
      // 3-point Gauss-Legendre is exact for the cubic basis polynomials.
      const [a, b] = [sig[i]!, sig[i + 1]!];
      const nodes = [-Math.sqrt(3 / 5), 0, Math.sqrt(3 / 5)];
      const weights = [5 / 9, 8 / 9, 5 / 9];
      c.forEach((coef, j) => {
        const basis = (tau: number): number => {
          let p = 1;
          for (let k = 0; k < order; k++) if (k !== j) p *= (tau - sig[i - k]!) / (sig[i - j]! - sig[i - k]!);
          return p;
        };
        const q = nodes.reduce((sum, x, n) => sum + weights[n]! * basis(((b - a) / 2) * x + (a + b) / 2), 0) * ((b - a) / 2);
        assert.ok(Math.abs(coef - q) < 1e-9, `step ${i} coefficient ${j}: ${coef} vs ${q}`);
      });
    }
  });
});

describe('new samplers are exact when the model is', () => {
  // ε constant: x = x0 + σ·ε lies on the ODE's solution, so every consistent step lands on it.
  for (const [name, config] of [
    ['heun', LEADING],
    ['lms', LEADING],
    ['unipc', SD],
    ['heun', { ...LEADING, prediction_type: 'v_prediction' }],
    ['unipc', { ...SD, prediction_type: 'v_prediction' }],
    ['lms', { ...LEADING, use_karras_sigmas: true }],
  ] as const) {
    it(`${name} ${JSON.stringify(config).includes('v_prediction') ? 'v_prediction' : 'epsilon'}${JSON.stringify(config).includes('karras') ? ' karras' : ''}`, () => {
      const s = createScheduler(name, config);
      s.setTimesteps(12);
      const v = JSON.stringify(config).includes('v_prediction');
      const sg0 = s.sigmas[0]!;
      const start = X0.map((x, i) => alphaOf(name, sg0) * (x + sg0 * EPS[i]!));
      const out = run(s, start, (_xh, sigma) => {
        const a = 1 / Math.hypot(sigma, 1);
        return v ? EPS.map((e, i) => a * e - a * sigma * X0[i]!) : EPS;
      });
      const last = s.sigmas[s.sigmas.length - 1]!;
      const want = X0.map((x, i) => alphaOf(name, last) * (x + last * EPS[i]!));
      assert.ok(relL2(out, want) < 1e-5, `relative error ${relL2(out, want)}`);
    });
  }
});

describe('order of accuracy on a Gaussian ODE with a closed-form solution', () => {
  // Data ~ N(0, s²): the exact denoiser is x·s²/(s² + σ²), ε = x·σ/(s² + σ²), and the
  // probability-flow ODE dx/dσ = ε solves to x(σ) = x(σ0)·√((s² + σ²)/(s² + σ0²)).
  const s2 = 0.25;
  // Karras sigmas: with timestep spacing the last step spans a large log-SNR range at any step
  // count, which hides the order (the first-order Euler passes as 1, as it should).
  const error = (name: SamplerName, steps: number): number => {
    const s = createScheduler(name, SD, { karras: true });
    s.setTimesteps(steps);
    const sg0 = s.sigmas[0]!;
    const start = EPS.map((e) => alphaOf(name, sg0) * e * Math.sqrt(s2 + sg0 ** 2));
    const out = run(s, start, (xh, sigma) => Array.from(xh, (v) => (v * Math.hypot(sigma, 1) * sigma) / (s2 + sigma ** 2)));
    const last = s.sigmas[s.sigmas.length - 1]!;
    const want = start.map((v) => (v / alphaOf(name, sg0)) * Math.sqrt((s2 + last ** 2) / (s2 + sg0 ** 2)) * alphaOf(name, last));
    return relL2(out, want);
  };
  for (const name of ['heun', 'lms', 'unipc'] as const) {
    it(`${name}: second order or better (8 → 32 steps cuts the error 2^3.6-fold or more)`, () => {
      const e8 = error(name, 8);
      const e32 = error(name, 32);
      assert.ok(e8 < 0.15, `8-step error ${e8}`);
      assert.ok(e32 < e8 / 2 ** 3.6, `errors ${e8} → ${e32}: order ${(Math.log2(e8 / e32) / 2).toFixed(2)}`);
    });
  }
  it('the test tells orders apart: first-order Euler fails the same bound', () => {
    assert.ok(error('euler', 32) > error('euler', 8) / 2 ** 3.6);
  });
});

/** Solves a small dense system (Gaussian elimination with partial pivoting). */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[p]![c]!)) p = r;
    [m[c], m[p]] = [m[p]!, m[c]!];
    for (let r = c + 1; r < n; r++) {
      const k = m[r]![c]! / m[c]![c]!;
      for (let j = c; j <= n; j++) m[r]![j]! -= k * m[c]![j]!;
    }
  }
  const x = Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let v = m[r]![n]!;
    for (let j = r + 1; j < n; j++) v -= m[r]![j]! * x[j]!;
    x[r] = v / m[r]![r]!;
  }
  return x;
}

describe('unipc', () => {
  /**
   * UniPC (arXiv 2302.04867) as diffusers' UniPCMultistepScheduler runs it, in float64 and in the
   * general form (any order p: R = [rk^(i-1)], b_i = h·φ_i(h)·i!/B(h), solved): the corrector
   * UniC-p with the new model output, then the predictor UniP-p (ρ = ½ at p = 2).
   */
  function uniPcReference(sigmas: readonly number[], steps: number, x: Float64Array, model: (x: ArrayLike<number>) => Float64Array, bh1: boolean): Float64Array[] {
    const lam = (sg: number): number => -Math.log(sg);
    const vp = (sg: number) => ({ alpha: 1 / Math.hypot(sg, 1), sigma: sg / Math.hypot(sg, 1) });
    const coeffs = (h: number, order: number, rks: number[]) => {
      const hh = -h;
      const hPhi1 = Math.expm1(hh);
      let hPhiK = hPhi1 / hh - 1;
      let fact = 1;
      const bh = bh1 ? hh : Math.expm1(hh);
      const R: number[][] = [];
      const b: number[] = [];
      for (let i = 1; i <= order; i++) {
        R.push(rks.map((r) => r ** (i - 1)));
        b.push((hPhiK * fact) / bh);
        fact *= i + 1;
        hPhiK = hPhiK / hh - 1 / fact;
      }
      return { hPhi1, bh, R, b };
    };
    const outs: Float64Array[] = [];
    const x0s: Float64Array[] = [];
    let last: Float64Array | null = null;
    let lastOrder = 1;
    for (let i = 0; i < steps; i++) {
      const s = vp(sigmas[i]!);
      const eps = model(x);
      const x0 = x.map((v, j) => (v - s.sigma * eps[j]!) / s.alpha);
      if (i > 0 && last !== null) {
        // UniC-p from last (sigma i-1) to x (sigma i), with p = the previous step's order.
        const h = lam(sigmas[i]!) - lam(sigmas[i - 1]!);
        const m0 = x0s[x0s.length - 1]!;
        const rks: number[] = [];
        const d1s: Float64Array[] = [];
        for (let k = 1; k < lastOrder; k++) {
          const rk = (lam(sigmas[i - 1 - k]!) - lam(sigmas[i - 1]!)) / h;
          rks.push(rk);
          d1s.push(x0s[x0s.length - 1 - k]!.map((v, j) => (v - m0[j]!) / rk));
        }
        rks.push(1);
        const c = coeffs(h, lastOrder, rks);
        const rho = lastOrder === 1 ? [0.5] : solve(c.R, c.b);
        const t = vp(sigmas[i]!);
        const from = vp(sigmas[i - 1]!);
        x = last.map((v, j) => {
          let corr = 0;
          d1s.forEach((d, k) => (corr += rho[k]! * d[j]!));
          return (t.sigma / from.sigma) * v - t.alpha * c.hPhi1 * m0[j]! - t.alpha * c.bh * (corr + rho[rho.length - 1]! * (x0[j]! - m0[j]!));
        });
      }
      x0s.push(x0);
      const order = Math.min(2, steps - i, i + 1);
      lastOrder = order;
      last = x;
      // UniP-p from sigma i to i+1.
      const h = lam(sigmas[i + 1]!) - lam(sigmas[i]!);
      const m0 = x0;
      const rks: number[] = [];
      const d1s: Float64Array[] = [];
      for (let k = 1; k < order; k++) {
        const rk = (lam(sigmas[i - k]!) - lam(sigmas[i]!)) / h;
        rks.push(rk);
        d1s.push(x0s[x0s.length - 1 - k]!.map((v, j) => (v - m0[j]!) / rk));
      }
      rks.push(1);
      const c = coeffs(h, order, rks);
      const rho = order === 2 ? [0.5] : order > 2 ? solve(c.R.slice(0, -1).map((r) => r.slice(0, -1)), c.b.slice(0, -1)) : [];
      const t = vp(sigmas[i + 1]!);
      const cur = x;
      x = cur.map((v, j) => {
        let pred = 0;
        d1s.forEach((d, k) => (pred += rho[k]! * d[j]!));
        return (t.sigma / s.sigma) * v - t.alpha * c.hPhi1 * m0[j]! - t.alpha * c.bh * pred;
      });
      outs.push(x);
    }
    return outs;
  }

  for (const [what, config, opts] of [
    ['bh2, 10 steps', SD, {}],
    ['bh1, 7 steps', { ...SD, solver_type: 'bh1' }, {}],
    ['bh2, karras, leading', LEADING, { karras: true }],
  ] as const) {
    it(`matches a float64 transcription of the predictor-corrector (${what})`, () => {
      const s = createScheduler('unipc', config, opts);
      const steps = what.includes('7') ? 7 : 10;
      s.setTimesteps(steps);
      const model = (xh: ArrayLike<number>): Float64Array => Float64Array.from(xh, (v, i) => 0.3 * Math.tanh(v) + 0.05 * Math.cos(i));
      const start = Float64Array.from({ length: N }, (_, i) => Math.cos(0.7 * i));
      const expected = uniPcReference(s.sigmas, steps, start, model, what.startsWith('bh1'));
      let cur = t4(start);
      s.timesteps.forEach((t, k) => {
        cur = s.step(t4(model(cur.data)), t, cur);
        assert.ok(relL2(cur.data, expected[k]!) < 1e-5, `step ${k}: ${relL2(cur.data, expected[k]!)}`);
      });
    });
  }
});

describe('heun and lms against float64 transcriptions, with a nonlinear model', () => {
  const model = (xh: ArrayLike<number>, t: number): Float64Array => Float64Array.from(xh, (v, i) => 0.3 * Math.tanh(v) + 0.01 * (t / 1000) * Math.cos(i));

  it('heun: Euler predictor, trapezoidal corrector with the model at the predicted point, Euler to 0 at the end', () => {
    const s = createScheduler('heun', LEADING);
    s.setTimesteps(6);
    const ts = Array.from({ length: 6 }, (_, i) => 166 * (5 - i) + 1);
    const sg = [...ts.map(sigmaAt), 0];
    let x = Float64Array.from({ length: N }, (_, i) => 3 * Math.cos(0.7 * i));
    const expected: Float64Array[] = [];
    for (let k = 0; k < 6; k++) {
      const scaled = (v: Float64Array, sigma: number): Float64Array => v.map((u) => u / Math.hypot(sigma, 1));
      const d1 = model(scaled(x, sg[k]!), ts[k]!);
      const xe = x.map((v, i) => v + d1[i]! * (sg[k + 1]! - sg[k]!));
      expected.push(xe);
      if (k === 5) break;
      const d2 = model(scaled(xe, sg[k + 1]!), ts[k + 1]!);
      x = x.map((v, i) => v + ((d1[i]! + d2[i]!) / 2) * (sg[k + 1]! - sg[k]!));
      expected.push(x);
    }
    let cur = t4(Float64Array.from({ length: N }, (_, i) => 3 * Math.cos(0.7 * i)));
    assert.equal(s.timesteps.length, 11);
    s.timesteps.forEach((t, k) => {
      cur = s.step(t4(model(s.scaleModelInput(cur, t).data, t)), t, cur);
      assert.ok(relL2(cur.data, expected[k]!) < 1e-5, `evaluation ${k}: ${relL2(cur.data, expected[k]!)}`);
    });
  });

  it('lms: x += Σ c_j·d_(i−j) over the last 4 derivatives, coefficients by quadrature of the Lagrange basis', () => {
    const s = createScheduler('lms', LEADING);
    s.setTimesteps(8);
    const sg = s.sigmas;
    const nodes = [-Math.sqrt(3 / 5), 0, Math.sqrt(3 / 5)];
    const weights = [5 / 9, 8 / 9, 5 / 9];
    let x = Float64Array.from({ length: N }, (_, i) => 3 * Math.cos(0.7 * i));
    let cur = t4(x);
    const ds: Float64Array[] = [];
    s.timesteps.forEach((t, i) => {
      const eps = model(x.map((v) => v / Math.hypot(sg[i]!, 1)), t);
      cur = s.step(t4(model(s.scaleModelInput(cur, t).data, t)), t, cur);
      ds.unshift(eps);
      const order = Math.min(i + 1, 4);
      x = x.map((v, e) => {
        let acc = v;
        for (let j = 0; j < order; j++) {
          const basis = (tau: number): number => {
            let p = 1;
            for (let k = 0; k < order; k++) if (k !== j) p *= (tau - sg[i - k]!) / (sg[i - j]! - sg[i - k]!);
            return p;
          };
          const [a, b] = [sg[i]!, sg[i + 1]!];
          const c = nodes.reduce((sum, z, n) => sum + weights[n]! * basis(((b - a) / 2) * z + (a + b) / 2), 0) * ((b - a) / 2);
          acc += c * ds[j]![e]!;
        }
        return acc;
      });
      assert.ok(relL2(cur.data, x) < 1e-5, `step ${i}: ${relL2(cur.data, x)}`);
    });
  });
});

describe('dpmpp-2m-sde', () => {
  it('follows diffusers\' sde-dpmsolver++ midpoint update with the injected noise, one draw per step', () => {
    const draws: Float64Array[] = [];
    const randn = (dims: readonly number[]): Float32Array => {
      assert.deepEqual(dims, DIMS);
      const n = Float64Array.from({ length: N }, (_, i) => Math.sin(2.1 * i + draws.length));
      draws.push(n);
      return Float32Array.from(n);
    };
    const s = createScheduler('dpmpp-2m-sde', SD, { randn });
    s.setTimesteps(10);
    const model = (xh: ArrayLike<number>): Float64Array => Float64Array.from(xh, (v, i) => 0.3 * Math.tanh(v) + 0.05 * Math.cos(i));
    // float64 transcription of DPMSolverMultistepScheduler (algorithm_type sde-dpmsolver++, solver_order 2).
    const vp = (sg: number) => {
      const alpha = 1 / Math.hypot(sg, 1);
      return { alpha, sigma: sg * alpha, lambda: Math.log(alpha) - Math.log(sg * alpha) };
    };
    let x = Float64Array.from({ length: N }, (_, i) => Math.cos(0.7 * i));
    let cur = t4(x);
    let prevX0: Float64Array | null = null;
    let prevLambda = 0;
    const n = s.timesteps.length;
    s.timesteps.forEach((t, k) => {
      const eps = model(cur.data);
      cur = s.step(t4(eps), t, cur);
      const from = vp(s.sigmas[k]!);
      const to = vp(s.sigmas[k + 1]!);
      const x0 = x.map((v, i) => (v - from.sigma * eps[i]!) / from.alpha);
      const h = to.lambda - from.lambda;
      const noise = draws[k]!;
      const first = k === 0 || k === n - 1;
      const d1 = first ? null : x0.map((v, i) => (v - prevX0![i]!) / ((from.lambda - prevLambda) / h));
      const c0 = to.alpha * (1 - Math.exp(-2 * h));
      const cn = to.sigma * Math.sqrt(1 - Math.exp(-2 * h));
      x = x.map((v, i) => (to.sigma / from.sigma) * Math.exp(-h) * v + c0 * x0[i]! + (d1 ? 0.5 * c0 * d1[i]! : 0) + cn * noise[i]!);
      prevX0 = x0;
      prevLambda = from.lambda;
      assert.ok(relL2(cur.data, x) < 1e-5, `step ${k}: ${relL2(cur.data, x)}`);
    });
    assert.equal(draws.length, 10);
  });
});

describe('sampler names', () => {
  it('resolves our names, A1111 names (case-insensitive), Karras variants and k_ aliases', () => {
    const cases: [string, ReturnType<typeof resolveSampler>][] = [
      ['dpmpp-2m', { sampler: 'dpmpp-2m' }],
      ['Euler a', { sampler: 'euler-a' }],
      ['DPM++ 2M Karras', { sampler: 'dpmpp-2m', karras: true }],
      ['dpm++ 2m sde karras', { sampler: 'dpmpp-2m-sde', karras: true }],
      ['DPM++ 2M SDE', { sampler: 'dpmpp-2m-sde' }],
      ['UniPC', { sampler: 'unipc' }],
      ['PLMS', { sampler: 'pndm' }],
      ['LMS', { sampler: 'lms' }],
      ['LMS Karras', { sampler: 'lms', karras: true }],
      ['Heun', { sampler: 'heun' }],
      ['DDIM', { sampler: 'ddim' }],
      ['Euler', { sampler: 'euler' }],
      ['k_euler_a', { sampler: 'euler-a' }],
    ];
    for (const [name, want] of cases) assert.deepEqual(resolveSampler(name), want, name);
  });

  it('every listed A1111 name resolves and writes itself back', () => {
    for (const name of A1111_SAMPLERS) {
      const r = resolveSampler(name);
      assert.equal(a1111SamplerName(r.sampler, r.karras), name);
    }
  });

  it('unknown names and Karras for DDIM/PLMS are errors that list both vocabularies', () => {
    for (const bad of ['DPM++ 3M', 'DDIM Karras', 'PLMS Karras', '']) {
      assert.throws(() => resolveSampler(bad), /unknown sampler .*use one of ddim, pndm, .* or an AUTOMATIC1111 name: Euler a, Euler a Karras|unknown sampler .*AUTOMATIC1111 name: .*DPM\+\+ 2M Karras/, bad);
    }
  });
});
