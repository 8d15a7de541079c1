/**
 * ToMe for Stable Diffusion (Bolya & Hoffman, tomesd): bipartite soft matching on each
 * transformer block's input tokens at the top levels. In every sy×sx cell one token is a
 * destination (top-left, or seeded-random), the rest are sources; each source finds its most
 * cosine-similar destination, the r = ⌊ratio·N⌋ most similar sources are merged (averaged) into
 * their destinations, the sub-layer runs on the fewer tokens, and un-merging copies each
 * destination's output back to its sources. The matching is computed once per block and used
 * for self-attention, and optionally for cross-attention and the MLP, as tomesd does.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { Feed } from '../runtime/session.js';
import { randint, TorchGenerator } from '../random/torch-randn.js';
import { IDENTITY_BLOCK, type AttentionVariant, type BlockContext, type BlockTokens, type SubLayer } from './variant.js';

export interface TomeOptions {
  method: 'tome';
  /** Fraction of a level's tokens to merge, in [0, 1 − 1/(sx·sy)]. */
  ratio: number;
  sx?: number;
  sy?: number;
  /** Random destination per cell (tomesd's use_rand; default off here, so results are deterministic without a seed). */
  random?: boolean;
  /** Seed of the random destinations; default tomesd's unseeded torch.Generator (67280421310721). */
  seed?: number;
  /** Merge at levels whose downsampling factor is at most this (1 = top level only). */
  maxDownsample?: number;
  mergeAttn?: boolean;
  mergeCrossAttn?: boolean;
  mergeMlp?: boolean;
}

/** The initial seed of a fresh torch.Generator, which tomesd uses when not seeded. */
export const TORCH_DEFAULT_SEED = 67280421310721;

/**
 * Source and destination token indices of a grid, as tomesd lays them out: in each full sy×sx
 * cell the token at offset `choice` (row-major in the cell) is the destination; tokens outside
 * the last full cells stay sources. Both lists ascend.
 */
export function bipartition(h: number, w: number, sx: number, sy: number, choice?: Int32Array): { src: number[]; dst: number[] } {
  const hsy = Math.floor(h / sy);
  const wsx = Math.floor(w / sx);
  const isDst = new Uint8Array(h * w);
  for (let cy = 0; cy < hsy; cy++) {
    for (let cx = 0; cx < wsx; cx++) {
      const k = choice ? choice[cy * wsx + cx]! : 0;
      isDst[(cy * sy + Math.floor(k / sx)) * w + cx * sx + (k % sx)] = 1;
    }
  }
  const src: number[] = [];
  const dst: number[] = [];
  isDst.forEach((d, i) => (d ? dst : src).push(i));
  return { src, dst };
}

function i64(values: readonly number[]): BigInt64Array {
  return BigInt64Array.from(values, (v) => BigInt(v));
}

/** The merge/un-merge pair for one block, as graph ops on [B, N, C] tokens. */
class Matching {
  private readonly b: number;
  private readonly n: number;
  private readonly nSrc: number;
  private readonly nDst: number;
  private readonly r: number;
  /** [B, nSrc − r], [B, r]: which sources stay, which merge; [B, r]: into which destination. */
  private readonly unmIdx: Value;
  private readonly srcIdx: Value;
  private readonly dstIdx: Value;
  /** 1 + how many sources each destination receives, [B, nDst, 1]. */
  private readonly counts: Value;
  /** Where each token of [unmerged sources, destinations, merged sources] goes back to, [B, N]. */
  private readonly positions: Value;

  constructor(
    private readonly g: GraphBuilder,
    metric: Value,
    private readonly srcAll: Value,
    private readonly dstAll: Value,
    ratio: number,
  ) {
    [this.b, this.n] = metric.shape as [number, number];
    this.nSrc = srcAll.dim(0);
    this.nDst = dstAll.dim(0);
    this.r = Math.min(this.nSrc, Math.floor(this.n * ratio));
    const { b, nSrc, nDst, r } = this;
    const normed = g.div(metric, g.op('ReduceL2', [metric], { axes: { ints: [-1] }, keepdims: { i: 1 } }, [b, this.n, 1]));
    const a = this.take(normed, srcAll);
    const d = this.take(normed, dstAll);
    const scores = g.matmul(a, g.transpose(d, [0, 2, 1]));
    const nodeMax = g.op('ReduceMax', [scores], { axes: { ints: [-1] }, keepdims: { i: 0 } }, [b, nSrc]);
    const nodeIdx = g.op('ArgMax', [scores], { axis: { i: -1 }, keepdims: { i: 0 } }, [b, nSrc], { type: 'int64' });
    // Sources by descending similarity: the first r merge, the rest stay.
    const [, edge] = g.topK(nodeMax, nSrc, -1);
    this.unmIdx = g.slice(edge, 1, r, nSrc);
    this.srcIdx = g.slice(edge, 1, 0, r);
    this.dstIdx = g.op('GatherElements', [nodeIdx, this.srcIdx], { axis: { i: 1 } }, [b, r], { type: 'int64' });
    const ones = g.constant(new Float32Array(b * r).fill(1), [b, r, 1]);
    const zeros = g.constant(new Float32Array(b * nDst), [b, nDst, 1]);
    this.counts = g.add(this.scatterAdd(zeros, this.dstIdx, ones), 1);
    const srcPos = (idx: Value): Value => g.op('Gather', [srcAll, idx], { axis: { i: 0 } }, idx.shape, { type: 'int64' });
    const dstPos = g.op('Expand', [g.reshape(dstAll, [1, nDst]), g.constInt64([b, nDst])], {}, [b, nDst]);
    this.positions = g.concat([srcPos(this.unmIdx), dstPos, srcPos(this.srcIdx)], 1);
  }

  /** x[:, idx] for a 1-D index list. */
  private take(x: Value, idx: Value): Value {
    const [b, , c] = x.shape as [number, number, number];
    return this.g.op('Gather', [x, idx], { axis: { i: 1 } }, [b, idx.dim(0), c]);
  }

  /** idx [B, K] → [B, K, C], for GatherElements / ScatterElements over tokens. */
  private spread(idx: Value, c: number): Value {
    const [b, k] = idx.shape as [number, number];
    return this.g.op('Expand', [this.g.reshape(idx, [b, k, 1]), this.g.constInt64([b, k, c])], {}, [b, k, c], { type: 'int64' });
  }

  private scatterAdd(into: Value, idx: Value, values: Value): Value {
    return this.g.op('ScatterElements', [into, this.spread(idx, values.dim(2)), values], { axis: { i: 1 }, reduction: { s: 'add' } }, into.shape);
  }

  private pick(x: Value, idx: Value): Value {
    const [b, , c] = x.shape as [number, number, number];
    return this.g.op('GatherElements', [x, this.spread(idx, c)], { axis: { i: 1 } }, [b, idx.dim(1), c]);
  }

  /** [B, N, C] → [B, N − r, C]: kept sources, then destinations averaged with their merged sources. */
  merge(x: Value): Value {
    const g = this.g;
    const src = this.take(x, this.srcAll);
    const dst = this.take(x, this.dstAll);
    const merged = g.div(this.scatterAdd(dst, this.dstIdx, this.pick(src, this.srcIdx)), this.counts);
    return g.concat([this.pick(src, this.unmIdx), merged], 1);
  }

  /** [B, N − r, C] → [B, N, C]: every token gets its own row back, merged sources their destination's. */
  unmerge(y: Value): Value {
    const g = this.g;
    const [b, m, c] = y.shape as [number, number, number];
    const kept = this.nSrc - this.r;
    const dst = g.slice(y, 1, kept, m);
    const rows = g.concat([y, this.pick(dst, this.dstIdx)], 1);
    const zeros = g.constant(new Float32Array(b * this.n * c), [b, this.n, c]);
    return g.op('ScatterElements', [zeros, this.spread(this.positions, c), rows], { axis: { i: 1 } }, [b, this.n, c]);
  }
}

export interface ResolvedTome {
  ratio: number;
  sx: number;
  sy: number;
  random: boolean;
  maxDownsample: number;
  merge: Record<SubLayer, boolean>;
}

/** Random destinations drawn as tomesd draws them: one generator, one torch.randint per merged block per forward pass. */
export class TomeRandomState {
  private readonly generator: TorchGenerator;

  constructor(seed: number) {
    this.generator = new TorchGenerator(seed);
  }

  draw(cells: number, options: number): Int32Array {
    return randint(this.generator, options, [cells]);
  }
}

export function tomeAttention(o: ResolvedTome, state: TomeRandomState): AttentionVariant {
  const blocks: { src: string; dst: string; h: number; w: number }[] = [];
  return {
    forBlock(top, hidden, ctx: BlockContext): BlockTokens {
      if (2 ** ctx.level > o.maxDownsample) return IDENTITY_BLOCK;
      const [h, w] = ctx.grid;
      if (Math.floor(o.ratio * h * w) <= 0 || h < o.sy || w < o.sx) return IDENTITY_BLOCK;
      const { src, dst } = bipartition(h, w, o.sx, o.sy);
      // tomesd falls back to the fixed top-left destination when the batch is odd.
      const random = o.random && hidden.dim(0) % 2 === 0;
      let srcAll: Value;
      let dstAll: Value;
      if (random) {
        const i = blocks.length;
        blocks.push({ src: `tome_src_${i}`, dst: `tome_dst_${i}`, h, w });
        srcAll = top.input(`tome_src_${i}`, [src.length], 'int64');
        dstAll = top.input(`tome_dst_${i}`, [dst.length], 'int64');
      } else {
        srcAll = top.constInt64(src);
        dstAll = top.constInt64(dst);
      }
      const m = new Matching(top, hidden, srcAll, dstAll, o.ratio);
      return {
        apply(g, layer, x, fn) {
          if (!o.merge[layer]) return fn(g, x, x);
          const merged = m.merge(x);
          return m.unmerge(fn(g, merged, merged));
        },
      };
    },
    feeds(): Feed[] {
      return blocks.flatMap((blk) => {
        const cells = Math.floor(blk.h / o.sy) * Math.floor(blk.w / o.sx);
        const { src, dst } = bipartition(blk.h, blk.w, o.sx, o.sy, state.draw(cells, o.sx * o.sy));
        return [
          { name: blk.src, type: 'int64' as const, data: i64(src), dims: [src.length] },
          { name: blk.dst, type: 'int64' as const, data: i64(dst), dims: [dst.length] },
        ];
      });
    },
  };
}
