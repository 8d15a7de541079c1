/**
 * ToDo, token downsampling (Smith et al., arXiv 2402.13573): in the self-attention of the
 * highest-resolution levels, keys and values are computed from the level's tokens
 * downsampled on their 2-D grid by a factor; every query is kept.
 *
 * Levels count over the U-Net levels that have self-attention, highest resolution first, not
 * by channel width as in the authors' code (320 → level 1, 640 → level 2): in SD 1.x/2.x the
 * first is the latent's own grid, in SDXL (no attention there) the grid downsampled once.
 * Factors may be fractional (1.5, 2.5, …) for the interpolating modes, as the AUTOMATIC1111
 * extension sd-webui-token-downsampling allows.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { fromTokens, toTokens } from '../models/layers.js';
import { IDENTITY_BLOCK, type AttentionVariant, type BlockContext } from './variant.js';
import { UserError } from '../errors.js';

export const TODO_MODES = ['nearest', 'nearest-exact', 'avg-pool', 'max-pool', 'bilinear'] as const;
export type TodoMode = (typeof TODO_MODES)[number];

export interface TodoOptions {
  method: 'todo';
  /** Factor at the first attention level; 'auto' keeps its key/value grid near 64x64 (see autoTodoFactor). */
  factor: number | 'auto';
  mode?: TodoMode;
  /** Factor at the next attention level (default 1 = off). */
  level2Factor?: number;
  /** Fraction of the denoising steps after which attention goes back to dense (default 1 = never). */
  stopAt?: number;
}

/** Graph input that switches downsampling on (true) or off (false) when `stopAt` is used. */
export const TODO_ACTIVE_INPUT = 'todo_active';

/**
 * Whether ToDo downsamples at 0-based denoising step `step` of `total` under `stopAt`: for the
 * first ⌊stopAt · total⌋ steps, as the A1111 extension's "disable after" (`int(d · steps)`),
 * so that the same setting gives the same images here and there.
 */
export function todoActiveAt(stopAt: number, step: number, total: number): boolean {
  return step < Math.floor(stopAt * total);
}

/** Modes that interpolate and so accept fractional factors; the pooling modes need whole windows. */
export const FRACTIONAL_TODO_MODES: readonly TodoMode[] = ['nearest', 'nearest-exact', 'bilinear'];

/**
 * The authors' demo grows the factor with resolution (SD 1.5: 1024px → 2, 1536px → 3, 2048px
 * → 4) so the first attention level's key/value grid stays about 64x64. As a rule: the largest
 * integer factor that keeps that level's grid (`grid`, h x w tokens) at least 64 tokens on the
 * geometric mean of its sides, and at least 1. SDXL's first attention level is half the
 * latent: 1024px → 1 (off), 2048px → 2.
 */
export function autoTodoFactor(grid: readonly [number, number]): number {
  return Math.max(1, Math.floor(Math.sqrt(grid[0] * grid[1]) / 64));
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

/**
 * Downsamples tokens [B, h·w, C] on their grid by `k` (output grid ⌊h/k⌋ x ⌊w/k⌋, as the
 * A1111 extension's `int(h / k)`); `k` may be fractional except for the pooling modes.
 */
export function downsampleTokens(g: GraphBuilder, x: Value, grid: readonly [number, number], k: number, mode: TodoMode): Value {
  const [h, w] = grid;
  const [b, n, c] = x.shape as [number, number, number];
  if (n !== h * w) throw new Error(`ToDo: ${n} tokens do not form a ${h}x${w} grid`);
  const nh = Math.floor(h / k);
  const nw = Math.floor(w / k);
  if (nh < 1 || nw < 1) throw new UserError(`ToDo: factor ${k} is larger than the ${h}x${w} token grid`);
  if (!Number.isInteger(k) && !FRACTIONAL_TODO_MODES.includes(mode)) {
    throw new UserError(`ToDo: mode ${mode} pools whole k x k windows and needs an integer factor; got ${k} (use ${FRACTIONAL_TODO_MODES.join(', ')} for fractional factors)`);
  }
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

export function todoAttention(o: Required<Omit<TodoOptions, 'method'>>): AttentionVariant {
  const factorAt = (ctx: BlockContext): number => {
    if (ctx.attentionLevel === 0) return o.factor === 'auto' ? autoTodoFactor(ctx.grid) : o.factor;
    return ctx.attentionLevel === 1 ? o.level2Factor : 1;
  };
  // With stopAt, a bool graph input picks the path: one graph and one set of weights serve both.
  let active: Value | undefined;
  return {
    forBlock(top, _hidden, ctx: BlockContext) {
      const k = factorAt(ctx);
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
