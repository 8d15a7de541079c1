/**
 * Attention alone at SD's top-level shape (8 heads of 40): the tiled (flash) MultiHeadAttention
 * kernel on all tokens, the same kernel on ToDo's fewer keys/values, and the plain
 * MatMul-Softmax-MatMul graph that materialises the whole attention map.
 */
import { GraphBuilder } from '../graph/builder.js';
import { serializeModel } from '../graph/serialize.js';
import { createSession, ort, type RuntimeOptions } from '../runtime/session.js';
import { stats, type Stats } from './speed.js';

export type AttentionKernel = 'flash' | 'flash-todo-2' | 'flash-todo-4' | 'matmul-softmax';

export interface AttentionRecord {
  type: 'attention';
  kernel: AttentionKernel;
  tokens: number;
  keys: number;
  heads: number;
  headDim: number;
  step: Stats;
  gflops: number;
  /** Why a configuration was not run (memory), when it was not. */
  skipped?: string;
}

/** The plain graph holds heads·N·L fp32 scores at once: stay well inside the machine's memory. */
const MAX_SCORE_BYTES = 4 * 2 ** 30;

function graph(kernel: AttentionKernel, n: number, keys: number, heads: number, hd: number): GraphBuilder {
  const g = new GraphBuilder(kernel);
  const d = heads * hd;
  const q = g.input('q', [1, n, d]);
  const k = g.input('k', [1, keys, d]);
  const v = g.input('v', [1, keys, d]);
  if (kernel !== 'matmul-softmax') {
    g.output(g.multiHeadAttention(q, k, v, heads), 'out');
    return g;
  }
  const split = (x: typeof q, len: number): typeof q => g.transpose(g.reshape(x, [1, len, heads, hd]), [0, 2, 1, 3]);
  const scores = g.mul(g.matmul(split(q, n), g.transpose(split(k, keys), [0, 1, 3, 2])), hd ** -0.5);
  const out = g.matmul(g.softmax(scores), split(v, keys));
  g.output(g.reshape(g.transpose(out, [0, 2, 1, 3]), [1, n, d]), 'out');
  return g;
}

export async function runAttentionBench(
  tokens: readonly number[],
  runs: number,
  rt: RuntimeOptions & { maxSeconds?: number; onLog?: (m: string) => void } = {},
): Promise<AttentionRecord[]> {
  const heads = 8;
  const hd = 40;
  const deadline = rt.maxSeconds ? performance.now() + rt.maxSeconds * 1000 : Infinity;
  const out: AttentionRecord[] = [];
  for (const n of tokens) {
    for (const kernel of ['flash', 'flash-todo-2', 'flash-todo-4', 'matmul-softmax'] as const) {
      const keys = kernel === 'flash-todo-2' ? n / 4 : kernel === 'flash-todo-4' ? n / 16 : n;
      const base = { type: 'attention' as const, kernel, tokens: n, keys, heads, headDim: hd };
      if (kernel === 'matmul-softmax' && heads * n * keys * 4 > MAX_SCORE_BYTES) {
        out.push({ ...base, step: stats([NaN]), gflops: NaN, skipped: `the full attention map needs ${((heads * n * keys * 4) / 2 ** 30).toFixed(1)} GiB` });
        continue;
      }
      if (performance.now() >= deadline) return out;
      rt.onLog?.(`attention ${kernel} over ${n} tokens`);
      const g = graph(kernel, n, keys, heads, hd);
      const flops = g.flops.attention + g.flops.other;
      const session = await createSession(serializeModel(g.build()), undefined, rt);
      const d = heads * hd;
      const rand = (len: number): Float32Array => Float32Array.from({ length: len * d }, (_, i) => Math.sin(i * 0.618));
      const feeds = { q: new ort.Tensor('float32', rand(n), [1, n, d]), k: new ort.Tensor('float32', rand(keys), [1, keys, d]), v: new ort.Tensor('float32', rand(keys), [1, keys, d]) };
      await session.run(feeds);
      const times: number[] = [];
      for (let i = 0; i < runs && performance.now() < deadline; i++) {
        const t0 = performance.now();
        await session.run(feeds);
        times.push(performance.now() - t0);
      }
      await session.release();
      if (times.length === 0) return out;
      const s = stats(times);
      out.push({ ...base, step: s, gflops: flops / s.medianMs / 1e6 });
    }
  }
  return out;
}
