/**
 * The speed-up an attention method's FLOP count predicts for a model and size: the U-Net graph
 * built twice (dense and with the method) without weights, its FLOPs counted by the graph
 * builder. Cached per question.
 */
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { denseAttention } from '../attention/dense.js';
import { WeightRecorder } from '../graph/weights.js';
import { buildUNetGraph } from '../models/unet.js';
import { modelFacts } from './model-facts.js';

export interface SpeedupEstimate {
  width: number;
  height: number;
  /** One U-Net step with dense attention and with the method (batch 2: guidance). */
  denseGflops: number;
  gflops: number;
  /** Dense FLOPs / the method's FLOPs over the whole run (ToDo's steps past disable_after count as dense). */
  flopIdealSpeedup: number;
}

export class SpeedupEstimator {
  private readonly cache = new Map<string, SpeedupEstimate>();

  estimate(modelPath: string, width: number, height: number, attention: AttentionOptions): SpeedupEstimate {
    const key = JSON.stringify([modelPath, width, height, attention]);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const { unet: cfg, vaeScale } = modelFacts(modelPath);
    const latent = [height / vaeScale, width / vaeScale] as const;
    // Batch 2: classifier-free guidance runs both halves in one pass.
    const shape = { batch: 2, height: latent[0], width: latent[1], textLength: 77 };
    const flops = (variant: typeof denseAttention): number => {
      const f = buildUNetGraph(cfg, new WeightRecorder(), shape, variant).flops;
      return f.attention + f.other;
    };
    const dense = flops(denseAttention);
    const method = attention.method === 'dense' ? dense : flops(resolveAttention(attention).variant({ latent }));
    const share = attention.method === 'todo' ? (attention.stopAt ?? 1) : 1;
    const perRun = share * method + (1 - share) * dense;
    const out = { width, height, denseGflops: dense / 1e9, gflops: method / 1e9, flopIdealSpeedup: dense / perRun };
    this.cache.set(key, out);
    return out;
  }

  /** The estimate for each pass of a job: the first at its size, the hires fix's second at the scaled size. */
  passes(modelPath: string, width: number, height: number, hiresScale: number | undefined, attention: AttentionOptions): (SpeedupEstimate & { pass: number })[] {
    const sizes = hiresScale ? [1, hiresScale] : [1];
    return sizes.map((k, i) => ({ pass: i + 1, ...this.estimate(modelPath, Math.round(width * k), Math.round(height * k), attention) }));
  }
}
