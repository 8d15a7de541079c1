/**
 * diffusers' DPMSolverMultistepScheduler (v0.26) with algorithm_type "dpmsolver++" (DPM-Solver++,
 * arXiv 2211.01095) or "sde-dpmsolver++" (its SDE form, A1111's "DPM++ 2M SDE"): multistep
 * updates on the data prediction x0, second order by default, first order on the first step and,
 * with lower_order_final, near the end of short schedules. The SDE form draws fresh noise on
 * every step from `randn` (diffusers: randn_tensor from the pipeline's generator).
 * solver_order 3 is not implemented.
 */
import { numel, tensor, type Tensor } from '../tensor.js';
import {
  addNoiseSigmaVp,
  checkSteps,
  cloneState,
  karrasTimesteps,
  multistepIndex,
  multistepTimesteps,
  npInterp,
  vp,
} from './common.js';
import { alphasCumprod, ConfigReader, readNoiseSchedule, TIMESTEP_SPACINGS, trainingSigmas, type TimestepSpacing } from './config.js';
import type { Randn } from './euler-ancestral.js';
import type { Scheduler } from './index.js';

const f = Math.fround;
const OWNER = 'DPM-Solver++';

type DpmPrediction = 'epsilon' | 'sample' | 'v_prediction';

export class DpmSolverMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  private ts: number[] = [];
  private sg: number[] = [];
  private stepIndex: number | null = null;
  /** Data predictions of the last solverOrder steps, oldest first. */
  private modelOutputs: Float32Array[] = [];
  private lowerOrderNums = 0;
  private readonly numTrain: number;
  private readonly ac: Float32Array;
  private readonly trainSigmas: Float32Array;
  private readonly prediction: DpmPrediction;
  private readonly solverOrder: number;
  private readonly heun: boolean;
  private readonly lowerOrderFinal: boolean;
  private readonly eulerAtFinal: boolean;
  private readonly finalSigmaZero: boolean;
  private readonly lambdaMinClipped: number;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly karras: boolean;
  /** Set for sde-dpmsolver++: the source of each step's noise. */
  private readonly randn: Randn | null;

  constructor(config: object, karras?: boolean, randn?: Randn) {
    const r = new ConfigReader(config, OWNER);
    const schedule = readNoiseSchedule(r, false);
    this.numTrain = schedule.numTrainTimesteps;
    this.ac = alphasCumprod(schedule);
    this.trainSigmas = trainingSigmas(this.ac);
    this.prediction = r.choice('prediction_type', ['epsilon', 'sample', 'v_prediction'], 'epsilon');
    r.unsupported('solver_order', [1, 2], 2);
    this.solverOrder = r.integer('solver_order', 2, 1);
    // diffusers maps "deis" to dpmsolver++ and the UniPC/DEIS solver types to midpoint.
    const sde = r.choice('algorithm_type', ['dpmsolver++', 'deis', 'sde-dpmsolver++'], 'dpmsolver++') === 'sde-dpmsolver++';
    if (sde && randn === undefined) throw new Error(`${OWNER} scheduler: algorithm_type "sde-dpmsolver++" needs a noise source (randn)`);
    this.randn = sde ? randn! : null;
    const solverType = r.choice('solver_type', ['midpoint', 'heun', 'logrho', 'bh1', 'bh2'], 'midpoint');
    this.heun = solverType === 'heun';
    this.lowerOrderFinal = r.bool('lower_order_final', true);
    this.eulerAtFinal = r.bool('euler_at_final', false);
    this.finalSigmaZero = r.choice('final_sigmas_type', ['zero', 'sigma_min'], 'zero') === 'zero';
    this.lambdaMinClipped = r.number('lambda_min_clipped', -Infinity);
    this.spacing = r.choice('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = r.integer('steps_offset', 0, 0);
    this.karras = karras ?? r.bool('use_karras_sigmas', false);
    r.unsupported('use_lu_lambdas', [false], false);
    r.unsupported('thresholding', [false], false);
    r.unsupported('variance_type', [undefined, 'fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log'], undefined);
  }

  get timesteps(): number[] {
    return this.ts;
  }

  get sigmas(): number[] {
    return this.sg;
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.numTrain, OWNER);
    // Timesteps whose lambda falls below lambda_min_clipped are cut from the top of the range.
    let clipped = 0;
    for (const a of this.ac) {
      const lambda = f(f(Math.log(f(Math.sqrt(a)))) - f(Math.log(f(Math.sqrt(f(1 - a))))));
      if (lambda < this.lambdaMinClipped) clipped++;
    }
    const last = this.numTrain - clipped;
    let ts = multistepTimesteps(this.spacing, last, this.numTrain, steps, this.stepsOffset);
    let sigmas: number[];
    if (this.karras) {
      ({ sigmas, timesteps: ts } = karrasTimesteps(this.trainSigmas, steps));
    } else {
      sigmas = ts.map((t) => npInterp(t, this.trainSigmas));
    }
    this.ts = ts;
    this.sg = [...sigmas, this.finalSigmaZero ? 0 : this.trainSigmas[0]!].map(f);
    this.modelOutputs = [];
    this.lowerOrderNums = 0;
    this.stepIndex = null;
  }

  scaleModelInput(x: Tensor): Tensor {
    return x;
  }

  clone(): this {
    return cloneState(this);
  }

  /** α_t·x0 + σ_t·noise with α_t = 1/sqrt(σ² + 1), σ_t = σ·α_t, σ at the position of `t` (the last one when absent, as diffusers). */
  addNoise(x0: Tensor, noise: Tensor, t: number): Tensor {
    return addNoiseSigmaVp(this.ts, this.sg, x0, noise, t, OWNER);
  }

  step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    const i = multistepIndex(this.ts, this.stepIndex, t, modelOutput, x, OWNER);
    const n = this.ts.length;
    const finalFirstOrder = i === n - 1 && (this.eulerAtFinal || (this.lowerOrderFinal && n < 15) || this.finalSigmaZero);

    this.modelOutputs = [...this.modelOutputs, this.dataPrediction(modelOutput.data, x.data, i)].slice(-this.solverOrder);
    const noise = this.randn === null ? null : this.noise(x.dims);
    let out: Float32Array;
    if (this.solverOrder === 1 || this.lowerOrderNums < 1 || finalFirstOrder) out = this.firstOrder(x.data, i, noise);
    else out = this.secondOrder(x.data, i, noise);
    if (this.lowerOrderNums < this.solverOrder) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return tensor(out, x.dims);
  }

  /** diffusers' convert_model_output for dpmsolver++: the model output as an x0 estimate. */
  private dataPrediction(m: Float32Array, x: Float32Array, i: number): Float32Array {
    if (this.prediction === 'sample') return m.slice();
    const { alpha, sigmaT } = vp(this.sg[i]!);
    if (this.prediction === 'epsilon') return x.map((v, j) => f(f(v - f(sigmaT * m[j]!)) / alpha));
    return x.map((v, j) => f(f(alpha * v) - f(sigmaT * m[j]!)));
  }

  private noise(dims: readonly number[]): Float32Array {
    const noise = this.randn!(dims);
    if (noise.length !== numel(dims)) throw new Error(`${OWNER} scheduler: randn returned ${noise.length} values for dims [${dims.join(', ')}]`);
    return noise;
  }

  /**
   * The SDE form's coefficients: x·(sigma_t/sigma_s)·e^-h + alpha_t·(1 − e^-2h)·x0 (+ the
   * second-order term) + sigma_t·√(1 − e^-2h)·noise, each product in float32 as diffusers.
   */
  private sdeCoefficients(t: { alpha: number; sigmaT: number }, sigmaS: number, h: number): { ratio: number; c0: number; cNoise: number } {
    const e2h = f(Math.exp(f(-2 * h)));
    return {
      ratio: f(f(t.sigmaT / sigmaS) * f(Math.exp(-h))),
      c0: f(t.alpha * f(1 - e2h)),
      cNoise: f(t.sigmaT * f(Math.sqrt(f(1 - e2h)))),
    };
  }

  private firstOrder(x: Float32Array, i: number, noise: Float32Array | null): Float32Array {
    const t = vp(this.sg[i + 1]!);
    const s = vp(this.sg[i]!);
    const h = f(t.lambda - s.lambda);
    if (noise !== null) {
      const c = this.sdeCoefficients(t, s.sigmaT, h);
      const d0 = this.modelOutputs[this.modelOutputs.length - 1]!;
      return x.map((v, j) => f(f(f(c.ratio * v) + f(c.c0 * d0[j]!)) + f(c.cNoise * noise[j]!)));
    }
    const ratio = f(t.sigmaT / s.sigmaT);
    const c0 = f(t.alpha * f(f(Math.exp(-h)) - 1));
    const d0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    return x.map((v, j) => f(f(ratio * v) - f(c0 * d0[j]!)));
  }

  private secondOrder(x: Float32Array, i: number, noise: Float32Array | null): Float32Array {
    const t = vp(this.sg[i + 1]!);
    const s0 = vp(this.sg[i]!);
    const s1 = vp(this.sg[i - 1]!);
    const h = f(t.lambda - s0.lambda);
    const r0 = f(f(s0.lambda - s1.lambda) / h);
    const invR0 = f(1 / r0);
    const ratio = f(t.sigmaT / s0.sigmaT);
    const expm1 = f(f(Math.exp(-h)) - 1);
    const c0 = f(t.alpha * expm1);
    const mos = this.modelOutputs;
    const m0 = mos[mos.length - 1]!;
    const m1 = mos[mos.length - 2]!;
    if (noise !== null) {
      const c = this.sdeCoefficients(t, s0.sigmaT, h);
      const c1 = this.heun ? f(t.alpha * f(f(f(1 - f(Math.exp(f(-2 * h)))) / f(-2 * h)) + 1)) : f(0.5 * c.c0);
      return x.map((v, j) => {
        const d1 = f(invR0 * f(m0[j]! - m1[j]!));
        return f(f(f(f(c.ratio * v) + f(c.c0 * m0[j]!)) + f(c1 * d1)) + f(c.cNoise * noise[j]!));
      });
    }
    if (this.heun) {
      const c1 = f(t.alpha * f(f(expm1 / h) + 1));
      return x.map((v, j) => {
        const d1 = f(invR0 * f(m0[j]! - m1[j]!));
        return f(f(f(ratio * v) - f(c0 * m0[j]!)) + f(c1 * d1));
      });
    }
    const c1 = f(0.5 * c0);
    return x.map((v, j) => {
      const d1 = f(invR0 * f(m0[j]! - m1[j]!));
      return f(f(f(ratio * v) - f(c0 * m0[j]!)) - f(c1 * d1));
    });
  }
}
