/**
 * diffusers' PNDMScheduler (v0.26): pseudo linear multistep (PLMS) steps, preceded by
 * pseudo Runge-Kutta (PRK) steps unless skip_prk_steps is set (Stable Diffusion sets it).
 */
import { tensor, type Tensor } from '../tensor.js';
import { addNoiseVp, checkSameShape, checkSteps, cloneState, requireSteps, roundHalfEven, spacedTimesteps } from './common.js';
import { alphasCumprod, ConfigReader, readNoiseSchedule, TIMESTEP_SPACINGS, type TimestepSpacing } from './config.js';
import type { Scheduler } from './index.js';

const f = Math.fround;
const OWNER = 'PNDM';
const SIXTH = f(1 / 6);
const THIRD = f(1 / 3);
const TWENTY_FOURTH = f(1 / 24);

export class PndmScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly sigmas: number[] = [];
  private ts: number[] = [];
  private prkTimesteps: number[] = [];
  private steps: number | null = null;
  private readonly numTrain: number;
  private readonly ac: Float32Array;
  private readonly finalAlphaCumprod: number;
  private readonly vPrediction: boolean;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly skipPrkSteps: boolean;
  // Multistep state, reset by setTimesteps.
  private counter = 0;
  private ets: Float32Array[] = [];
  private curModelOutput: Float32Array | null = null;
  private curSample: Float32Array | null = null;

  constructor(config: object) {
    const r = new ConfigReader(config, OWNER);
    const schedule = readNoiseSchedule(r, false);
    this.numTrain = schedule.numTrainTimesteps;
    this.ac = alphasCumprod(schedule);
    this.finalAlphaCumprod = r.bool('set_alpha_to_one', false) ? 1 : this.ac[0]!;
    this.vPrediction = r.choice('prediction_type', ['epsilon', 'v_prediction'], 'epsilon') === 'v_prediction';
    this.spacing = r.choice('timestep_spacing', TIMESTEP_SPACINGS, 'leading');
    this.stepsOffset = r.integer('steps_offset', 0, 0);
    this.skipPrkSteps = r.bool('skip_prk_steps', false);
  }

  get timesteps(): number[] {
    return this.ts;
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.numTrain, OWNER);
    if (!this.skipPrkSteps && steps < 4) {
      throw new Error(`${OWNER} scheduler: Runge-Kutta warm-up (skip_prk_steps false) needs at least 4 steps, got ${steps}`);
    }
    const asc = spacedTimesteps(this.spacing, this.numTrain, steps, this.stepsOffset).map(roundHalfEven).reverse();
    let plms: number[];
    if (this.skipPrkSteps) {
      // The second-to-last timestep appears twice: PLMS's second step re-evaluates it.
      plms = [...asc.slice(0, -1), ...asc.slice(-2, -1), ...asc.slice(-1)].reverse();
      this.prkTimesteps = [];
    } else {
      const halfStride = Math.floor(Math.floor(this.numTrain / steps) / 2);
      const pairs = asc.slice(-4).flatMap((t) => [t, t + halfStride]).slice(0, -1);
      this.prkTimesteps = pairs.flatMap((t) => [t, t]).slice(1, -1).reverse();
      plms = asc.slice(0, -3).reverse();
    }
    this.ts = [...this.prkTimesteps, ...plms];
    this.steps = steps;
    this.counter = 0;
    this.ets = [];
    this.curModelOutput = null;
    this.curSample = null;
  }

  scaleModelInput(x: Tensor): Tensor {
    return x;
  }

  clone(): this {
    return cloneState(this);
  }

  addNoise(x0: Tensor, noise: Tensor, t: number): Tensor {
    return addNoiseVp(this.ac, x0, noise, t, OWNER);
  }

  step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    const steps = requireSteps(this.steps, OWNER);
    checkSameShape(modelOutput, x, OWNER);
    if (this.counter >= this.ts.length) {
      throw new Error(`${OWNER} scheduler: all ${this.ts.length} steps are done; call setTimesteps again`);
    }
    const out =
      this.counter < this.prkTimesteps.length
        ? this.stepPrk(modelOutput.data, t, x.data, steps)
        : this.stepPlms(modelOutput.data, t, x.data, steps);
    this.counter++;
    return tensor(out, x.dims);
  }

  private stepPrk(m: Float32Array, t: number, x: Float32Array, steps: number): Float32Array {
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(this.numTrain / steps) / 2);
    const prevT = t - diffToPrev;
    const from = this.prkTimesteps[Math.floor(this.counter / 4) * 4]!;
    const phase = this.counter % 4;
    let eps = m;
    if (phase === 0) {
      this.curModelOutput = m.map((v) => f(SIXTH * v));
      // Copies: the caller may reuse its buffers between steps.
      this.ets.push(m.slice());
      this.curSample = x.slice();
    } else if (phase === 1 || phase === 2) {
      const cur = this.curModelOutput!;
      this.curModelOutput = cur.map((c, i) => f(c + f(THIRD * m[i]!)));
    } else {
      const cur = this.curModelOutput!;
      eps = cur.map((c, i) => f(c + f(SIXTH * m[i]!)));
      this.curModelOutput = null;
    }
    return this.prevSample(this.curSample ?? x, from, prevT, eps);
  }

  private stepPlms(m: Float32Array, t: number, x: Float32Array, steps: number): Float32Array {
    if (!this.skipPrkSteps && this.ets.length < 3) {
      throw new Error(`${OWNER} scheduler: PLMS steps need the 12 Runge-Kutta warm-up steps first`);
    }
    const stride = Math.floor(this.numTrain / steps);
    let from = t;
    let prevT = t - stride;
    if (this.counter !== 1) {
      this.ets = [...this.ets.slice(-3), m.slice()];
    } else {
      // The repeated timestep: step again from t + stride, this time with the averaged slope.
      prevT = t;
      from = t + stride;
    }
    const e = this.ets;
    const n = e.length;
    let sample = x;
    let eps: Float32Array;
    if (n === 1 && this.counter === 0) {
      eps = m;
      this.curSample = x.slice();
    } else if (n === 1 && this.counter === 1) {
      eps = m.map((v, i) => f(f(v + e[0]![i]!) / 2));
      sample = this.curSample!;
      this.curSample = null;
    } else if (n === 2) {
      eps = e[1]!.map((v, i) => f(f(f(3 * v) - e[0]![i]!) / 2));
    } else if (n === 3) {
      eps = e[2]!.map((v, i) => f(f(f(f(23 * v) - f(16 * e[1]![i]!)) + f(5 * e[0]![i]!)) / 12));
    } else {
      eps = e[3]!.map((v, i) => {
        const sum = f(f(f(f(55 * v) - f(59 * e[2]![i]!)) + f(37 * e[1]![i]!)) - f(9 * e[0]![i]!));
        return f(TWENTY_FOURTH * sum);
      });
    }
    return this.prevSample(sample, from, prevT, eps);
  }

  /** PNDM's x_t → x_{t-δ} transfer (formula (9) of arXiv 2202.09778). */
  private prevSample(x: Float32Array, t: number, prevT: number, modelOutput: Float32Array): Float32Array {
    if (!Number.isInteger(t) || t < 0 || t >= this.numTrain) {
      throw new Error(`${OWNER} scheduler: timestep ${t} is not an integer in [0, ${this.numTrain})`);
    }
    const a = this.ac[t]!;
    const aPrev = prevT >= 0 ? this.ac[prevT]! : this.finalAlphaCumprod;
    const b = f(1 - a);
    const bPrev = f(1 - aPrev);
    let eps = modelOutput;
    if (this.vPrediction) {
      const sqrtA = f(Math.sqrt(a));
      const sqrtB = f(Math.sqrt(b));
      eps = modelOutput.map((v, i) => f(f(sqrtA * v) + f(sqrtB * x[i]!)));
    }
    const sampleCoef = f(Math.sqrt(f(aPrev / a)));
    const denom = f(f(a * f(Math.sqrt(bPrev))) + f(Math.sqrt(f(f(a * b) * aPrev))));
    const diff = f(aPrev - a);
    return x.map((v, i) => f(f(sampleCoef * v) - f(f(diff * eps[i]!) / denom)));
  }
}
