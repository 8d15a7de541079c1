/**
 * The speed-up the speed methods' FLOP count predicts for a model and size: the U-Net graphs
 * built without weights (dense, with the attention method, and DeepCache's shallow graph), their
 * FLOPs counted by the graph builder, summed over the pass's steps as they would run: ToDo's
 * steps past disable_after dense, DeepCache's steps whole or shallow by its schedule. NGMS is
 * left out: how many calls it halves depends on the sampler's sigmas (the measured speed-up
 * shows it). Cached per question.
 */
import { denseAttention } from '../attention/dense.js';
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { todoActiveAt } from '../attention/todo.js';
import { WeightRecorder } from '../graph/weights.js';
import type { CacheGraph } from '../models/unet-cache.js';
import { buildUNetGraph } from '../models/unet.js';
import { deepCacheFullSteps, resolveDeepCache, type DeepCacheOptions } from '../pipeline/deepcache.js';
import { modelFacts } from './model-facts.js';

export interface SpeedupEstimate {
  width: number;
  height: number;
  steps: number;
  /** One whole U-Net step with dense attention, and the method's mean step over the pass (batch 2: guidance). */
  denseGflops: number;
  gflops: number;
  /** Dense FLOPs / the method's FLOPs over the pass. */
  flopIdealSpeedup: number;
}

/** What a pass runs that changes its FLOPs. */
export interface SpeedPlan {
  attention: AttentionOptions;
  deepcache?: DeepCacheOptions;
}

/** A job's speed methods per pass: the hires fix's DeepCache is the first pass's unless given (false: off there). */
export interface JobSpeedPlan extends SpeedPlan {
  hiresDeepcache?: DeepCacheOptions | false;
}

export class SpeedupEstimator {
  private readonly cache = new Map<string, SpeedupEstimate>();

  estimate(modelPath: string, width: number, height: number, plan: SpeedPlan, steps: number): SpeedupEstimate {
    const key = JSON.stringify([modelPath, width, height, plan, steps]);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const { unet: cfg, vaeScale } = modelFacts(modelPath);
    const latent = [height / vaeScale, width / vaeScale] as const;
    // Batch 2: classifier-free guidance runs both halves in one pass.
    const shape = { batch: 2, height: latent[0], width: latent[1], textLength: 77 };
    const flops = (variant: typeof denseAttention, cache?: CacheGraph): number => {
      const f = buildUNetGraph(cfg, new WeightRecorder(), shape, variant, {}, cache).flops;
      return f.attention + f.other;
    };
    const a = plan.attention;
    const method = a.method === 'dense' ? undefined : resolveAttention(a).variant({ latent });
    const dc = plan.deepcache && resolveDeepCache(plan.deepcache, cfg);
    const shallow = dc && ({ point: { block: dc.block, layer: dc.layer }, graph: 'shallow' } as const);
    // Per graph (whole, shallow), with the method's attention and with dense attention.
    const whole = { on: flops(method ?? denseAttention), off: flops(denseAttention) };
    const cached = shallow && { on: flops(method ?? denseAttention, shallow), off: flops(denseAttention, shallow) };
    const stopAt = a.method === 'todo' ? (a.stopAt ?? 1) : 1;
    const timesteps = Array.from({ length: steps }, (_, i) => steps - i);
    const full = dc ? deepCacheFullSteps(dc, timesteps, timesteps, 1) : timesteps.map(() => true);
    let total = 0;
    for (let i = 0; i < steps; i++) total += (full[i] || !cached ? whole : cached)[todoActiveAt(stopAt, i, steps) ? 'on' : 'off'];
    const out = { width, height, steps, denseGflops: whole.off / 1e9, gflops: total / steps / 1e9, flopIdealSpeedup: (steps * whole.off) / total };
    this.cache.set(key, out);
    return out;
  }

  /** The estimate for each pass of a job: the first at its size, the hires fix's second at the scaled size with its steps. */
  passes(modelPath: string, width: number, height: number, hires: { scale: number; steps: number } | undefined, plan: JobSpeedPlan, steps: number): (SpeedupEstimate & { pass: number })[] {
    const first = { attention: plan.attention, ...(plan.deepcache && { deepcache: plan.deepcache }) };
    const out = [{ pass: 1, ...this.estimate(modelPath, width, height, first, steps) }];
    if (!hires) return out;
    const second = plan.hiresDeepcache === undefined ? plan.deepcache : plan.hiresDeepcache || undefined;
    const size = [Math.round(width * hires.scale), Math.round(height * hires.scale)] as const;
    return [...out, { pass: 2, ...this.estimate(modelPath, size[0], size[1], { attention: plan.attention, ...(second && { deepcache: second }) }, hires.steps) }];
  }
}
