/**
 * One denoising pass's noise predictions: the U-Net on the guided batch (negative half first)
 * combined by the guidance scale, NGMS's prompt-only calls (guidance.ts) and DeepCache's whole
 * and shallow evaluations (deepcache.ts), with a count of what ran. A guidance-distilled U-Net
 * gets its guidance embedding instead (guidance-embedding.ts). MultiDiffusion's view batches
 * each keep a DeepCache feature of their own (a slot).
 *
 * With NGMS a guided evaluation runs as two calls of the prompt-only calls' batch (splitGuidance).
 *
 * DeepCache caches the guided batch as a unit, as the helper does. With both on, a whole-U-Net
 * step evaluates both halves, so the shallow steps after it have the negative half's feature
 * too, and NGMS skips the negative half on the shallow steps only (a prompt-only shallow step
 * takes the prompt's half of the feature): dropping the negative half of a whole step would
 * save half a U-Net and cost a whole one on the next guided step.
 *
 * ControlNets (controlnet.ts) run on each evaluation's own input, so their residuals follow
 * what the U-Net runs: both halves or the prompt's alone, a batch of views, and on DeepCache's
 * shallow steps the residuals of the shallow graph's skips only.
 */
import type { CachePoint } from '../models/unet-cache.js';
import type { UNet } from '../models/unet.js';
import { concatBatch, doubleBatch, type Tensor } from '../tensor.js';
import type { Conditioning } from './conditioning-sdxl.js';
import type { ControlNetPass } from './controlnet.js';
import { combineGuidance, condHalf, negativeHalf, negativeRows, promptRows, skipsUncond, type NgmsOptions } from './guidance.js';
import { timestepCondition } from './guidance-embedding.js';
import type { ViewBatch } from './multidiffusion.js';

/** U-Net evaluations of a pass: whole or shallow (DeepCache), and how many ran the prompt's half alone (NGMS). */
export interface PassEvaluations {
  full: number;
  shallow: number;
  promptOnly: number;
}

/** What one evaluation runs: the whole U-Net or DeepCache's shallow part, both halves or the prompt's alone (NGMS). */
export interface EvaluationKind {
  shallow: boolean;
  promptOnly: boolean;
  /** Both halves, as two calls (splitGuidance). */
  split: boolean;
}

export interface NoisePredictorOptions {
  unet: UNet;
  cfg: number;
  /** Whether a negative half runs (guidance-embedding.ts: cfg > 1, not for a guidance-distilled U-Net). */
  guided: boolean;
  ngms: NgmsOptions;
  /** The sigma NGMS compares for a timestep. */
  sigmaOf: (t: number) => number;
  /** DeepCache: the cache point and, per evaluation of the pass, whether it runs the whole U-Net. */
  deepcache?: { point: CachePoint; full: readonly boolean[] };
  /** ControlNets: the residuals the U-Net adds at each evaluation. */
  control?: ControlNetPass;
  /**
   * Guided evaluations as two calls of batch B (negative half, then the prompt's) instead of one
   * of 2B: with NGMS, whose prompt-only calls have batch B, every call then has the same shape
   * and the U-Net holds one session (one copy of its weights) instead of two.
   */
  splitGuidance?: boolean;
}

/**
 * The predictor's rule for evaluation `call` (0-based in the pass) at timestep `t`. A pass's
 * first evaluation is always whole (deepCacheFullSteps), so a shallow one has a feature to run on.
 */
export function evaluationKind(o: Pick<NoisePredictorOptions, 'guided' | 'ngms' | 'sigmaOf' | 'deepcache' | 'splitGuidance'>, call: number, t: number): EvaluationKind {
  const shallow = o.deepcache !== undefined && !o.deepcache.full[call];
  const promptOnly = o.guided && (shallow || !o.deepcache) && skipsUncond(call, o.sigmaOf(t), o.ngms);
  return { shallow, promptOnly, split: o.guided && !promptOnly && (o.splitGuidance ?? false) };
}

export class NoisePredictor {
  readonly evaluations: PassEvaluations = { full: 0, shallow: 0, promptOnly: 0 };
  /** DeepCache's feature from the last whole step, per slot. */
  private readonly features = new Map<number, Tensor>();

  constructor(private readonly o: NoisePredictorOptions) {}

  get guided(): boolean {
    return this.o.guided;
  }

  /**
   * The prediction for evaluation `call` (0-based in the pass) from the scaled latents `x`
   * [B, …] and the step's conditioning `c` (both halves when guided); `views`: MultiDiffusion's
   * view batch the latents are (its index keeps its own DeepCache feature).
   */
  async predict(call: number, x: Tensor, t: number, c: Conditioning, attentionActive: boolean, views?: ViewBatch): Promise<Tensor> {
    const { cfg, guided, deepcache } = this.o;
    const slot = views?.index ?? 0;
    const { shallow, promptOnly, split } = evaluationKind(this.o, call, t);
    const cached = shallow ? this.features.get(slot) : undefined;
    if (shallow && !cached) throw new Error(`DeepCache: evaluation ${call} is shallow, but no whole evaluation of this pass has left a feature to run on`);
    const both = guided && !promptOnly;
    const at = { call, t, attentionActive, views, shallow };
    let r: Evaluated;
    if (split) {
      const negative = await this.evaluate(at, x, negativeHalf(c), 'negative', cached && negativeRows(cached));
      const prompt = await this.evaluate(at, x, condHalf(c), 'prompt', cached && promptRows(cached));
      r = { sample: concatBatch(negative.sample, prompt.sample), feature: negative.feature && prompt.feature && concatBatch(negative.feature, prompt.feature) };
    } else if (both) r = await this.evaluate(at, doubleBatch(x), c, 'both', cached);
    else r = await this.evaluate(at, x, promptOnly ? condHalf(c) : c, 'prompt', cached && promptOnly ? promptRows(cached) : cached);
    if (deepcache && !shallow) this.features.set(slot, r.feature!);
    this.evaluations[shallow ? 'shallow' : 'full']++;
    if (promptOnly) this.evaluations.promptOnly++;
    return both ? combineGuidance(r.sample, cfg) : r.sample;
  }

  /** One U-Net call on `input` holding the given guidance halves, with its ControlNet residuals; `cached`: DeepCache's feature for those rows. */
  private async evaluate(at: EvaluationAt, input: Tensor, cond: Conditioning, halves: 'both' | 'negative' | 'prompt', cached: Tensor | undefined): Promise<Evaluated> {
    const { unet, cfg, deepcache, control } = this.o;
    const { call, t, attentionActive, views, shallow } = at;
    const controlResiduals = await control?.residuals({
      index: call,
      timestep: t,
      input,
      conditioning: cond,
      guided: halves === 'both',
      negativeOnly: halves === 'negative',
      attentionActive,
      ...(views && { views }),
      ...(shallow && { shallow: deepcache!.point }),
    });
    const opts = { attentionActive, ...cond.added, timestepCond: timestepCondition(cfg, unet.config, input.dims[0]!), ...(controlResiduals && { controlResiduals }) };
    if (!deepcache) return { sample: await unet.forward(input, t, cond.encoderHiddenStates, opts) };
    return unet.forwardCached(input, t, cond.encoderHiddenStates, { point: deepcache.point, feature: cached }, opts);
  }
}

interface EvaluationAt {
  call: number;
  t: number;
  attentionActive: boolean;
  views: ViewBatch | undefined;
  shallow: boolean;
}

interface Evaluated {
  sample: Tensor;
  /** DeepCache's feature for the rows evaluated (whole evaluations). */
  feature?: Tensor;
}
