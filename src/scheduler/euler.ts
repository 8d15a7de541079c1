/**
 * diffusers' EulerDiscreteScheduler (v0.26) without churn (s_churn = 0, the pipelines' default):
 * the deterministic Euler method of Karras et al. (2022), Algorithm 2, on sigma-scaled latents.
 */
import { tensor, type Tensor } from '../tensor.js';
import { checkSameShape, checkSteps, cloneState, findStepIndex, karrasSigmas, npInterp, sigmaToT, spacedTimesteps } from './common.js';
import { alphasCumprod, ConfigReader, readNoiseSchedule, TIMESTEP_SPACINGS, trainingSigmas, type TimestepSpacing } from './config.js';
import type { Scheduler } from './index.js';

const f = Math.fround;

type EulerPrediction = 'epsilon' | 'v_prediction' | 'sample' | 'original_sample';

/** What distinguishes the Euler variants' configs (EulerAncestralScheduler reuses this class). */
export interface EulerVariant {
  owner: string;
  predictions: readonly EulerPrediction[];
  /** EulerDiscrete's own keys: use_karras_sigmas, sigma_min/max, interpolation_type, timestep_type. */
  readsEulerKeys: boolean;
  /** Only use_karras_sigmas of those (Heun, LMS). */
  readsKarrasKey?: boolean;
}

const EULER: EulerVariant = {
  owner: 'Euler',
  predictions: ['epsilon', 'v_prediction', 'sample', 'original_sample'],
  readsEulerKeys: true,
};

export class EulerScheduler implements Scheduler {
  readonly order: number = 1;
  protected readonly owner: string;
  protected readonly prediction: EulerPrediction;
  /** Position in the schedule; found from the first timestep seen, then counted (as diffusers). */
  protected stepIndex: number | null = null;
  protected ts: number[] = [];
  protected sg: number[] = [];
  private readonly numTrain: number;
  private readonly trainSigmas: Float32Array;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly karras: boolean;
  private readonly sigmaMin: number | null;
  private readonly sigmaMax: number | null;

  constructor(config: object, karras?: boolean, variant: EulerVariant = EULER) {
    this.owner = variant.owner;
    const r = new ConfigReader(config, variant.owner);
    const schedule = readNoiseSchedule(r, true);
    this.numTrain = schedule.numTrainTimesteps;
    const ac = alphasCumprod(schedule);
    // Zero terminal SNR would make the last sigma infinite; diffusers pins ᾱ_T to 2^-24.
    if (schedule.rescaleBetasZeroSnr) ac[ac.length - 1] = 2 ** -24;
    this.trainSigmas = trainingSigmas(ac);
    this.prediction = r.choice('prediction_type', variant.predictions, 'epsilon');
    this.spacing = r.choice('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = r.integer('steps_offset', 0, 0);
    if (variant.readsEulerKeys) {
      this.karras = karras ?? r.bool('use_karras_sigmas', false);
      this.sigmaMin = r.optionalNumber('sigma_min');
      this.sigmaMax = r.optionalNumber('sigma_max');
      r.unsupported('interpolation_type', ['linear'], 'linear');
      r.unsupported('timestep_type', ['discrete'], 'discrete');
    } else {
      this.karras = karras ?? (variant.readsKarrasKey === true && r.bool('use_karras_sigmas', false));
      this.sigmaMin = null;
      this.sigmaMax = null;
    }
  }

  get timesteps(): number[] {
    return this.ts;
  }

  get sigmas(): number[] {
    return this.sg;
  }

  get initNoiseSigma(): number {
    // Before setTimesteps, diffusers' sigmas are the whole training range.
    const max = this.sg.length > 0 ? Math.max(...this.sg) : Math.max(...this.trainSigmas);
    if (this.spacing === 'linspace' || this.spacing === 'trailing') return max;
    return f(Math.sqrt(f(f(max * max) + 1)));
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.numTrain, this.owner);
    // NumPy float64 timesteps cast to float32; sigmas interpolated in float64, cast to float32.
    let ts = spacedTimesteps(this.spacing, this.numTrain, steps, this.stepsOffset).map(f);
    let sigmas = ts.map((t) => npInterp(t, this.trainSigmas));
    if (this.karras) {
      sigmas = karrasSigmas(this.sigmaMin ?? sigmas[sigmas.length - 1]!, this.sigmaMax ?? sigmas[0]!, steps);
      const logSigmas = this.trainSigmas.map(Math.log);
      ts = sigmas.map((s) => f(sigmaToT(s, logSigmas)));
    }
    this.ts = ts;
    this.sg = [...sigmas.map(f), 0];
    this.stepIndex = null;
  }

  /** The schedule position for this call: located from `t` on first use, then the counter. */
  protected index(t: number): number {
    if (this.ts.length === 0) throw new Error(`${this.owner} scheduler: call setTimesteps(steps) before scaleModelInput/step`);
    if (this.stepIndex === null) {
      const i = findStepIndex(this.ts, t);
      if (i < 0) throw new Error(`${this.owner} scheduler: timestep ${t} is not in the schedule set by setTimesteps`);
      this.stepIndex = i;
    }
    if (this.stepIndex >= this.ts.length) {
      throw new Error(`${this.owner} scheduler: all ${this.ts.length} steps are done; call setTimesteps again`);
    }
    return this.stepIndex;
  }

  /** x / sqrt(sigma² + 1): the UNet expects unit-variance (VP) input. */
  scaleModelInput(x: Tensor, t: number): Tensor {
    const sigma = this.sg[this.index(t)]!;
    const scale = f(Math.sqrt(f(f(sigma * sigma) + 1)));
    return tensor(x.data.map((v) => f(v / scale)), x.dims);
  }

  /** x0 + σ_t·noise, σ_t at the position of `t` in the schedule (init_noise_sigma plays no part). */
  clone(): this {
    return cloneState(this);
  }

  addNoise(x0: Tensor, noise: Tensor, t: number): Tensor {
    checkSameShape(noise, x0, this.owner);
    const i = findStepIndex(this.ts, t);
    if (i < 0) throw new Error(`${this.owner} scheduler: timestep ${t} is not in the schedule set by setTimesteps`);
    const sigma = this.sg[i]!;
    const n = noise.data;
    return tensor(x0.data.map((v, j) => f(v + f(n[j]! * sigma))), x0.dims);
  }

  /** The denoised estimate x0 from the model output at noise level sigma. */
  protected predictOriginal(m: Float32Array, x: Float32Array, sigma: number): Float32Array {
    if (this.prediction === 'epsilon') return x.map((v, i) => f(v - f(sigma * m[i]!)));
    if (this.prediction === 'v_prediction') {
      const cOut = f(-sigma / f(Math.sqrt(f(f(sigma * sigma) + 1))));
      const cSkipDiv = f(f(sigma * sigma) + 1);
      return m.map((v, i) => f(f(v * cOut) + f(x[i]! / cSkipDiv)));
    }
    return m;
  }

  step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    checkSameShape(modelOutput, x, this.owner);
    const i = this.index(t);
    const sigma = this.sg[i]!;
    const dt = f(this.sg[i + 1]! - sigma);
    const x0 = this.predictOriginal(modelOutput.data, x.data, sigma);
    const out = x.data.map((v, j) => {
      const derivative = f(f(v - x0[j]!) / sigma);
      return f(v + f(derivative * dt));
    });
    this.stepIndex = i + 1;
    return tensor(out, x.dims);
  }
}
