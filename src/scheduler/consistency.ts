/**
 * What diffusers' LCMScheduler (v0.26) and TCDScheduler (v0.27, its first release) share: their
 * config (SD's betas by default, `original_inference_steps`), the timestep schedule picked from
 * the distillation schedule, its image-to-image form (strength shortens the distillation
 * schedule; every asked step still runs), the step index, the x0 estimate and DDPM's add_noise.
 */
import { tensor, type Tensor } from '../tensor.js';
import { addNoiseVp, checkSameShape, checkSteps, cloneState, findStepIndex } from './common.js';
import { alphasCumprod, ConfigReader, readNoiseSchedule } from './config.js';
import type { Randn } from './euler-ancestral.js';
import type { Scheduler } from './index.js';

const f = Math.fround;

type ConsistencyPrediction = 'epsilon' | 'sample' | 'v_prediction';

/**
 * The distillation schedule holds every k-th training timestep (k = numTrain / originalSteps,
 * ending at numTrain − 1); strength keeps its lowest ⌊originalSteps · strength⌋ entries, and
 * `steps` of them are taken evenly by index, from the top: 4 of 50 give 999, 759, 499, 259.
 */
export function consistencyTimesteps(numTrain: number, originalSteps: number, steps: number, strength: number, owner: string): number[] {
  checkSteps(steps, numTrain, owner);
  const k = Math.floor(numTrain / originalSteps);
  // Python's int() of a float product, as diffusers sizes the schedule.
  const n = Math.trunc(originalSteps * strength);
  if (Math.floor(n / steps) < 1) {
    if (strength === 1) {
      throw new Error(`${owner} scheduler: ${steps} steps exceed original_inference_steps ${originalSteps}, the schedule the steps are picked from: use at most ${originalSteps} steps (4–8 is typical)`);
    }
    throw new Error(
      `${owner} scheduler: strength ${strength} keeps ${n} timesteps of the ${originalSteps}-step distillation schedule, fewer than the ${steps} steps asked: ` +
        `use at most ${Math.max(n, 1)} steps or a strength of at least ${Math.min(1, steps / originalSteps)}`,
    );
  }
  return Array.from({ length: steps }, (_, i) => (n - Math.floor(i * (n / steps))) * k - 1);
}

export abstract class ConsistencyScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly sigmas: number[] = [];
  protected readonly owner: string;
  protected readonly ac: Float32Array;
  protected readonly prediction: ConsistencyPrediction;
  protected readonly randn: Randn;
  private readonly numTrain: number;
  private readonly originalSteps: number;
  private ts: number[] = [];
  private stepIndex: number | null = null;

  /** `r` reads the subclass's config; the noise of its steps comes from `randn`. */
  protected constructor(r: ConfigReader, randn: Randn) {
    this.owner = r.owner;
    this.randn = randn;
    const schedule = readNoiseSchedule(r, true, { betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear' });
    this.numTrain = schedule.numTrainTimesteps;
    this.ac = alphasCumprod(schedule);
    this.prediction = r.choice('prediction_type', ['epsilon', 'sample', 'v_prediction'], 'epsilon');
    // ᾱ = 0 at the first timestep: x0 = (x − ε) / 0 (diffusers divides all the same).
    if (schedule.rescaleBetasZeroSnr && this.prediction === 'epsilon') {
      throw new Error(`${this.owner} scheduler: rescale_betas_zero_snr with epsilon prediction divides by zero at the first timestep; zero-terminal-SNR models predict v (prediction_type "v_prediction")`);
    }
    this.originalSteps = r.integer('original_inference_steps', 50, 1);
    if (this.originalSteps > this.numTrain) {
      throw new Error(`${this.owner} scheduler config: "original_inference_steps" ${this.originalSteps} exceeds num_train_timesteps ${this.numTrain}`);
    }
  }

  get timesteps(): number[] {
    return this.ts;
  }

  setTimesteps(steps: number): void {
    this.setImg2ImgTimesteps(steps, 1);
  }

  setImg2ImgTimesteps(steps: number, strength: number): void {
    this.ts = consistencyTimesteps(this.numTrain, this.originalSteps, steps, strength, this.owner);
    this.stepIndex = null;
  }

  scaleModelInput(x: Tensor): Tensor {
    return x;
  }

  clone(): this {
    return cloneState(this);
  }

  addNoise(x0: Tensor, noise: Tensor, t: number): Tensor {
    return addNoiseVp(this.ac, x0, noise, t, this.owner);
  }

  /** The position of `t` (found on the first step, as diffusers' _init_step_index, then counted) and the checks. */
  protected index(modelOutput: Tensor, t: number, x: Tensor): number {
    if (this.ts.length === 0) throw new Error(`${this.owner} scheduler: call setTimesteps(steps) before step`);
    checkSameShape(modelOutput, x, this.owner);
    if (this.stepIndex === null) {
      const i = findStepIndex(this.ts, t);
      if (i < 0) throw new Error(`${this.owner} scheduler: timestep ${t} is not in the schedule set by setTimesteps`);
      this.stepIndex = i;
    }
    if (this.stepIndex >= this.ts.length) throw new Error(`${this.owner} scheduler: all ${this.ts.length} steps are done; call setTimesteps again`);
    return this.stepIndex++;
  }

  /** The clean sample x0 and the noise ε the model output implies at ᾱ_t, in float32 as diffusers. */
  protected predict(m: Float32Array, x: Float32Array, alphaProd: number): { x0: Float32Array; eps: Float32Array } {
    const sqrtA = f(Math.sqrt(alphaProd));
    const sqrtB = f(Math.sqrt(f(1 - alphaProd)));
    if (this.prediction === 'epsilon') return { x0: x.map((v, i) => f(f(v - f(sqrtB * m[i]!)) / sqrtA)), eps: m };
    if (this.prediction === 'sample') return { x0: m, eps: x.map((v, i) => f(f(v - f(sqrtA * m[i]!)) / sqrtB)) };
    return { x0: x.map((v, i) => f(f(sqrtA * v) - f(sqrtB * m[i]!))), eps: m.map((v, i) => f(f(sqrtA * v) + f(sqrtB * x[i]!))) };
  }

  /** keep · x + add · z, z fresh standard normal noise from `randn` (the pipeline's generator). */
  protected withNoise(x: Float32Array, keep: number, add: number, dims: readonly number[]): Tensor {
    const z = this.randn(dims);
    if (z.length !== x.length) throw new Error(`${this.owner} scheduler: randn returned ${z.length} values for dims [${dims.join(', ')}]`);
    return tensor(
      x.map((v, j) => f(f(keep * v) + f(add * z[j]!))),
      dims,
    );
  }

  abstract step(modelOutput: Tensor, t: number, x: Tensor): Tensor;
}
