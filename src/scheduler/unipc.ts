/**
 * diffusers' UniPCMultistepScheduler (v0.26), with the defaults the pipelines use: predict_x0,
 * the B(h) = e^h − 1 variant ("bh2"; "bh1" uses B(h) = h), order 2 (1 on the first step and
 * with lower_order_final on the last), the UniC corrector after every step but the first
 * (arXiv 2302.04867). Each step: correct the previous update with the new model output
 * (UniC), then predict the next sample (UniP).
 */
import { tensor, type Tensor } from '../tensor.js';
import { addNoiseSigmaVp, checkSteps, cloneState, karrasTimesteps, multistepIndex, multistepTimesteps, npInterp, vp } from './common.js';
import { alphasCumprod, ConfigReader, readNoiseSchedule, TIMESTEP_SPACINGS, trainingSigmas, type TimestepSpacing } from './config.js';
import type { Scheduler } from './index.js';

const f = Math.fround;
const OWNER = 'UniPC';

type UniPcPrediction = 'epsilon' | 'sample' | 'v_prediction';

/** The step's log-SNR geometry: h, B(h), e^-h − 1, and the endpoint coefficients. */
interface Span {
  h: number;
  hPhi1: number;
  bh: number;
  /** b_1 and b_2 of the order conditions (b = h·φ_k(h)·k! / B(h)). */
  b: [number, number];
  ratio: number;
  alphaT: number;
}

export class UniPcMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  private ts: number[] = [];
  private sg: number[] = [];
  private stepIndex: number | null = null;
  /** Converted (x0) model outputs of the last solverOrder steps, oldest first. */
  private modelOutputs: Float32Array[] = [];
  private lowerOrderNums = 0;
  private thisOrder = 1;
  private lastSample: Float32Array | null = null;
  private readonly numTrain: number;
  private readonly trainSigmas: Float32Array;
  private readonly prediction: UniPcPrediction;
  private readonly solverOrder: number;
  private readonly bh1: boolean;
  private readonly lowerOrderFinal: boolean;
  private readonly disableCorrector: readonly number[];
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly karras: boolean;

  constructor(config: object, karras?: boolean) {
    const r = new ConfigReader(config, OWNER);
    const schedule = readNoiseSchedule(r, false);
    this.numTrain = schedule.numTrainTimesteps;
    this.trainSigmas = trainingSigmas(alphasCumprod(schedule));
    this.prediction = r.choice('prediction_type', ['epsilon', 'sample', 'v_prediction'], 'epsilon');
    r.unsupported('solver_order', [1, 2], 2);
    this.solverOrder = r.integer('solver_order', 2, 1);
    // diffusers maps the DPM-Solver solver types to bh2.
    this.bh1 = r.choice('solver_type', ['bh1', 'bh2', 'midpoint', 'heun', 'logrho'], 'bh2') === 'bh1';
    r.unsupported('predict_x0', [true], true);
    r.unsupported('thresholding', [false], false);
    r.unsupported('solver_p', [undefined], undefined);
    this.lowerOrderFinal = r.bool('lower_order_final', true);
    const disable = (config as Record<string, unknown>).disable_corrector ?? [];
    if (!Array.isArray(disable) || !disable.every((v) => Number.isInteger(v))) {
      throw new Error(`${OWNER} scheduler config: "disable_corrector" must be a list of step indices, got ${JSON.stringify(disable)}`);
    }
    this.disableCorrector = disable as number[];
    this.spacing = r.choice('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = r.integer('steps_offset', 0, 0);
    this.karras = karras ?? r.bool('use_karras_sigmas', false);
  }

  clone(): this {
    return cloneState(this);
  }

  addNoise(x0: Tensor, noise: Tensor, t: number): Tensor {
    return addNoiseSigmaVp(this.ts, this.sg, x0, noise, t, OWNER);
  }

  get timesteps(): number[] {
    return this.ts;
  }

  get sigmas(): number[] {
    return this.sg;
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.numTrain, OWNER);
    let ts = multistepTimesteps(this.spacing, this.numTrain, this.numTrain, steps, this.stepsOffset);
    let sigmas: number[];
    if (this.karras) {
      ({ sigmas, timesteps: ts } = karrasTimesteps(this.trainSigmas, steps));
      sigmas.push(sigmas[sigmas.length - 1]!);
    } else {
      // v0.26 ends at the smallest training sigma, not at 0.
      sigmas = [...ts.map((t) => npInterp(t, this.trainSigmas)), this.trainSigmas[0]!];
    }
    this.ts = ts;
    this.sg = sigmas.map(f);
    this.modelOutputs = [];
    this.lowerOrderNums = 0;
    this.lastSample = null;
    this.stepIndex = null;
  }

  scaleModelInput(x: Tensor): Tensor {
    return x;
  }

  step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    const i = multistepIndex(this.ts, this.stepIndex, t, modelOutput, x, OWNER);
    const n = this.ts.length;

    const converted = this.dataPrediction(modelOutput.data, x.data, i);
    let sample = x.data;
    if (i > 0 && !this.disableCorrector.includes(i - 1) && this.lastSample !== null) sample = this.correct(converted, this.lastSample, sample, i);
    this.modelOutputs = [...this.modelOutputs, converted].slice(-this.solverOrder);
    const order = this.lowerOrderFinal ? Math.min(this.solverOrder, n - i) : this.solverOrder;
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1);
    this.lastSample = sample;
    const out = this.predict(sample, i);
    if (this.lowerOrderNums < this.solverOrder) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return tensor(out, x.dims);
  }

  private dataPrediction(m: Float32Array, x: Float32Array, i: number): Float32Array {
    if (this.prediction === 'sample') return m.slice();
    const { alpha, sigmaT } = vp(this.sg[i]!);
    if (this.prediction === 'epsilon') return x.map((v, j) => f(f(v - f(sigmaT * m[j]!)) / alpha));
    return x.map((v, j) => f(f(alpha * v) - f(sigmaT * m[j]!)));
  }

  /** The update from sigma index `s` to `t`, in float32 as diffusers' torch scalars. */
  private span(s: number, t: number): Span {
    const to = vp(this.sg[t]!);
    const from = vp(this.sg[s]!);
    const h = f(to.lambda - from.lambda);
    const hh = f(-h);
    const hPhi1 = f(Math.expm1(hh));
    const bh = this.bh1 ? hh : hPhi1;
    let hPhiK = f(f(hPhi1 / hh) - 1);
    const b1 = f(hPhiK / bh);
    hPhiK = f(f(hPhiK / hh) - f(1 / 2));
    const b2 = f(f(hPhiK * 2) / bh);
    return { h, hPhi1, bh, b: [b1, b2], ratio: f(to.sigmaT / from.sigmaT), alphaT: to.alpha };
  }

  /** UniP: x_t = (σ_t/σ_s)·x − α_t·(e^-h − 1)·m0 − α_t·B(h)·½·D1 (the last term at order 2). */
  private predict(x: Float32Array, i: number): Float32Array {
    const sp = this.span(i, i + 1);
    const mos = this.modelOutputs;
    const m0 = mos[mos.length - 1]!;
    const c0 = f(sp.alphaT * sp.hPhi1);
    const base = x.map((v, j) => f(f(sp.ratio * v) - f(c0 * m0[j]!)));
    if (this.thisOrder < 2) return base;
    const m1 = mos[mos.length - 2]!;
    const rk = f(f(vp(this.sg[i - 1]!).lambda - vp(this.sg[i]!).lambda) / sp.h);
    const cb = f(sp.alphaT * sp.bh);
    return base.map((v, j) => f(v - f(cb * f(0.5 * f(f(m1[j]! - m0[j]!) / rk)))));
  }

  /**
   * UniC: redo the last step (from `last` at sigma index i−1 to i) with the new model output:
   * x_t = base − α_t·B(h)·(ρ_1·D1 + ρ_t·(m_t − m0)), ρ from the order conditions R·ρ = b.
   */
  private correct(modelT: Float32Array, last: Float32Array, thisSample: Float32Array, i: number): Float32Array {
    const sp = this.span(i - 1, i);
    const mos = this.modelOutputs;
    const m0 = mos[mos.length - 1]!;
    const c0 = f(sp.alphaT * sp.hPhi1);
    const cb = f(sp.alphaT * sp.bh);
    if (last.length !== thisSample.length) throw new Error(`${OWNER} scheduler: sample size changed between steps`);
    if (this.thisOrder < 2) {
      return last.map((v, j) => f(f(f(sp.ratio * v) - f(c0 * m0[j]!)) - f(cb * f(0.5 * f(modelT[j]! - m0[j]!)))));
    }
    const m1 = mos[mos.length - 2]!;
    const rk = f(f(vp(this.sg[i - 2]!).lambda - vp(this.sg[i - 1]!).lambda) / sp.h);
    // R = [[1, 1], [rk, 1]]: a 2x2 solve (diffusers: torch.linalg.solve in float32).
    const [b1, b2] = sp.b;
    const rho1 = f((b1 - b2) / (1 - rk));
    const rhoT = f((b2 - rk * b1) / (1 - rk));
    return last.map((v, j) => {
      const corr = f(rho1 * f(f(m1[j]! - m0[j]!) / rk));
      const d1t = f(modelT[j]! - m0[j]!);
      return f(f(f(sp.ratio * v) - f(c0 * m0[j]!)) - f(cb * f(corr + f(rhoT * d1t))));
    });
  }
}
