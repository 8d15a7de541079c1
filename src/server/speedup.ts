/**
 * The speed-up ToDo's FLOP count predicts for a model and size: the U-Net graph built twice
 * (dense and ToDo) without weights, its FLOPs counted by the graph builder. Cached per question.
 */
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { denseAttention } from '../attention/dense.js';
import { WeightRecorder } from '../graph/weights.js';
import { findComponent } from '../io/model-folder.js';
import { buildUNetGraph, parseUNetConfig } from '../models/unet.js';

export interface SpeedupEstimate {
  width: number;
  height: number;
  denseGflops: number;
  todoGflops: number;
  /** Dense FLOPs / ToDo FLOPs over the whole run (steps past disable_after count as dense). */
  flopIdealSpeedup: number;
}

export class SpeedupEstimator {
  private readonly cache = new Map<string, SpeedupEstimate>();

  estimate(modelPath: string, width: number, height: number, attention: AttentionOptions): SpeedupEstimate {
    const key = JSON.stringify([modelPath, width, height, attention]);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const cfg = parseUNetConfig(findComponent(modelPath, 'unet').config);
    const latent = [height / 8, width / 8] as const;
    // Batch 2: classifier-free guidance runs both halves in one pass.
    const shape = { batch: 2, height: latent[0], width: latent[1], textLength: 77 };
    const flops = (variant: typeof denseAttention): number => {
      const f = buildUNetGraph(cfg, new WeightRecorder(), shape, variant).flops;
      return f.attention + f.other;
    };
    const dense = flops(denseAttention);
    const todo = attention.method === 'todo' ? flops(resolveAttention(attention).variant({ latent })) : dense;
    const share = attention.method === 'todo' ? (attention.stopAt ?? 1) : 0;
    const perRun = share * todo + (1 - share) * dense;
    const out = { width, height, denseGflops: dense / 1e9, todoGflops: todo / 1e9, flopIdealSpeedup: dense / perRun };
    this.cache.set(key, out);
    return out;
  }
}
