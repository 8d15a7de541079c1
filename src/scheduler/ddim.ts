/** diffusers' DDIMScheduler (v0.26) with eta = 0, the deterministic sampler pipelines use by default. */
import { tensor, type Tensor } from '../tensor.js';
import { addNoiseVp, checkSameShape, checkSteps, cloneState, requireSteps, roundHalfEven, spacedTimesteps } from './common.js';
import { alphasCumprod, ConfigReader, readNoiseSchedule, TIMESTEP_SPACINGS, type TimestepSpacing } from './config.js';
import type { Scheduler } from './index.js';

const f = Math.fround;
const OWNER = 'DDIM';

type DdimPrediction = 'epsilon' | 'sample' | 'v_prediction';

export class DdimScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly sigmas: number[] = [];
  private ts: number[] = [];
  private steps: number | null = null;
  private readonly numTrain: number;
  private readonly ac: Float32Array;
  private readonly finalAlphaCumprod: number;
  private readonly prediction: DdimPrediction;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly clipSample: boolean;
  private readonly clipRange: number;

  constructor(config: object) {
    const r = new ConfigReader(config, OWNER);
    const schedule = readNoiseSchedule(r, true);
    this.numTrain = schedule.numTrainTimesteps;
    this.ac = alphasCumprod(schedule);
    this.finalAlphaCumprod = r.bool('set_alpha_to_one', true) ? 1 : this.ac[0]!;
    this.prediction = r.choice('prediction_type', ['epsilon', 'sample', 'v_prediction'], 'epsilon');
    this.spacing = r.choice('timestep_spacing', TIMESTEP_SPACINGS, 'leading');
    this.stepsOffset = r.integer('steps_offset', 0, 0);
    this.clipSample = r.bool('clip_sample', true);
    this.clipRange = f(r.number('clip_sample_range', 1));
    r.unsupported('thresholding', [false], false);
  }

  get timesteps(): number[] {
    return this.ts;
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.numTrain, OWNER);
    this.ts = spacedTimesteps(this.spacing, this.numTrain, steps, this.stepsOffset).map(roundHalfEven);
    this.steps = steps;
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
    if (!Number.isInteger(t) || t < 0 || t >= this.numTrain) {
      throw new Error(`${OWNER} scheduler: timestep ${t} is not an integer in [0, ${this.numTrain})`);
    }
    // DDIM always looks back by the leading stride, whatever the spacing (as diffusers does).
    const prevT = t - Math.floor(this.numTrain / steps);
    const a = this.ac[t]!;
    const aPrev = prevT >= 0 ? this.ac[prevT]! : this.finalAlphaCumprod;
    const b = f(1 - a);
    const sqrtA = f(Math.sqrt(a));
    const sqrtB = f(Math.sqrt(b));
    const sqrtAPrev = f(Math.sqrt(aPrev));
    // With eta = 0 the variance term vanishes: the direction is sqrt(1 - ᾱ_prev)·ε.
    const dirCoef = f(Math.sqrt(f(1 - aPrev)));
    const m = modelOutput.data;
    const s = x.data;
    const out = new Float32Array(s.length);
    for (let i = 0; i < s.length; i++) {
      let x0: number;
      let eps: number;
      if (this.prediction === 'epsilon') {
        x0 = f(f(s[i]! - f(sqrtB * m[i]!)) / sqrtA);
        eps = m[i]!;
      } else if (this.prediction === 'sample') {
        x0 = m[i]!;
        eps = f(f(s[i]! - f(sqrtA * x0)) / sqrtB);
      } else {
        x0 = f(f(sqrtA * s[i]!) - f(sqrtB * m[i]!));
        eps = f(f(sqrtA * m[i]!) + f(sqrtB * s[i]!));
      }
      if (this.clipSample) x0 = Math.min(Math.max(x0, -this.clipRange), this.clipRange);
      out[i] = f(sqrtAPrev * x0) + f(dirCoef * eps);
    }
    return tensor(out, x.dims);
  }
}
