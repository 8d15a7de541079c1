/**
 * ToDo, token downsampling (Smith et al., arXiv 2402.13573): in the self-attention of the
 * highest-resolution levels, keys and values are computed from the level's tokens
 * downsampled on their 2-D grid by an integer factor; every query is kept.
 *
 * Levels are picked by resolution (level 0 = the latent's own grid), not by channel width as
 * in the authors' code (320 → level 1, 640 → level 2), so that models whose top level has
 * another width, or no attention there, are treated the same way.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { fromTokens, toTokens } from '../models/layers.js';
import { IDENTITY_BLOCK, type AttentionVariant, type BlockContext } from './variant.js';

export const TODO_MODES = ['nearest', 'nearest-exact', 'avg-pool', 'max-pool', 'bilinear'] as const;
export type TodoMode = (typeof TODO_MODES)[number];

export interface TodoOptions {
  method: 'todo';
  /** Factor at the top level; 'auto' keeps its key/value grid near 64x64 (see autoTodoFactor). */
  factor: number | 'auto';
  mode?: TodoMode;
  /** Factor at the next level (default 1 = off). */
  level2Factor?: number;
  /** Fraction of the denoising steps after which attention goes back to dense (default 1 = never). */
  stopAt?: number;
}

/** Graph input that switches downsampling on (true) or off (false) when `stopAt` is used. */
export const TODO_ACTIVE_INPUT = 'todo_active';

/**
 * The authors' demo grows the factor with resolution (1024px → 2, 1536px → 3, 2048px → 4) so
 * the top level's key/value grid stays about 64x64. As a rule: the largest factor that keeps
 * that grid at least 64 tokens on the geometric mean of its sides, and at least 1.
 */
export function autoTodoFactor(latent: readonly [number, number]): number {
  return Math.max(1, Math.floor(Math.sqrt(latent[0] * latent[1]) / 64));
}

/**
 * PyTorch's nearest source index for an output of `outSize` from `inSize` (F.interpolate with
 * an explicit size): the scale is a float32 in/out, the product is rounded to float32 first.
 */
export function nearestSourceIndex(dst: number, inSize: number, outSize: number, exact: boolean): number {
  if (inSize === outSize) return dst;
  const scale = Math.fround(inSize / outSize);
  const src = Math.floor(Math.fround((exact ? dst + 0.5 : dst) * scale));
  return Math.min(src, inSize - 1);
}

/** Downsamples tokens [B, h·w, C] on their grid by `k` (output grid ⌊h/k⌋ x ⌊w/k⌋). */
export function downsampleTokens(g: GraphBuilder, x: Value, grid: readonly [number, number], k: number, mode: TodoMode): Value {
  const [h, w] = grid;
  const [b, n, c] = x.shape as [number, number, number];
  if (n !== h * w) throw new Error(`ToDo: ${n} tokens do not form a ${h}x${w} grid`);
  const nh = Math.floor(h / k);
  const nw = Math.floor(w / k);
  if (nh < 1 || nw < 1) throw new Error(`ToDo: factor ${k} is larger than the ${h}x${w} token grid`);
  if (mode === 'nearest' || mode === 'nearest-exact') {
    const exact = mode === 'nearest-exact';
    const rows = Array.from({ length: nh }, (_, i) => nearestSourceIndex(i, h, nh, exact));
    const cols = Array.from({ length: nw }, (_, j) => nearestSourceIndex(j, w, nw, exact));
    const picked = g.gather(g.gather(g.reshape(x, [b, h, w, c]), 1, rows), 2, cols);
    return g.reshape(picked, [b, nh * nw, c]);
  }
  const img = fromTokens(g, x, h, w);
  const small =
    mode === 'bilinear'
      ? // align_corners=False and no antialiasing, as F.interpolate(mode="bilinear") does by default.
        g.resize(img, [nh, nw], { mode: { s: 'linear' }, coordinate_transformation_mode: { s: 'half_pixel' } })
      : g.pool(mode === 'avg-pool' ? 'AveragePool' : 'MaxPool', img, k);
  return toTokens(g, small);
}

export function todoAttention(o: Required<Omit<TodoOptions, 'factor' | 'method'>> & { factor: number }): AttentionVariant {
  const factorAt = (level: number): number => (level === 0 ? o.factor : level === 1 ? o.level2Factor : 1);
  // With stopAt, a bool graph input picks the path: one graph and one set of weights serve both.
  let active: Value | undefined;
  return {
    forBlock(top, _hidden, ctx: BlockContext) {
      const k = factorAt(ctx.level);
      if (k <= 1) return IDENTITY_BLOCK;
      if (o.stopAt < 1) active ??= top.input(TODO_ACTIVE_INPUT, [1], 'bool');
      return {
        apply(g, layer, x, fn) {
          if (layer !== 'attn1') return fn(g, x, x);
          const downsampled = (gg: GraphBuilder): Value => fn(gg, x, downsampleTokens(gg, x, ctx.grid, k, o.mode));
          return active ? g.ifElse(active, downsampled, (gg) => fn(gg, x, x)) : downsampled(g);
        },
      };
    },
    feeds: (step) => (active ? [{ name: TODO_ACTIVE_INPUT, type: 'bool', data: Uint8Array.of(step.active ? 1 : 0), dims: [1] }] : []),
  };
}
