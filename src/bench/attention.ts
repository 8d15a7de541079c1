/**
 * Attention alone at SD's top-level shape (8 heads of 40): the tiled (flash) MultiHeadAttention
 * kernel on all tokens, the same kernel on ToDo's fewer keys/values, the query-chunked
 * MatMul-Softmax-MatMul form on ToDo's keys (attention/forms.ts), and the plain
 * MatMul-Softmax-MatMul graph that materialises the whole attention map.
 */
import { chooseAttentionForm, type AttentionForm } from '../attention/forms.js';
import { GraphBuilder } from '../graph/builder.js';
import type { Precision } from '../graph/precision.js';
import { serializeModel } from '../graph/serialize.js';
import { createSession, ort, type RuntimeOptions } from '../runtime/session.js';
import { stats, type Stats } from './speed.js';

export const ATTENTION_KERNELS = ['flash', 'flash-todo-2', 'flash-todo-4', 'chunked-todo-2', 'chunked-todo-4', 'matmul-softmax'] as const;
export type AttentionKernel = (typeof ATTENTION_KERNELS)[number];

export interface AttentionRecord {
  type: 'attention';
  kernel: AttentionKernel;
  batch: number;
  precision: Precision;
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

function graph(kernel: AttentionKernel, b: number, n: number, keys: number, heads: number, hd: number, precision: Precision, provider: string): GraphBuilder {
  const form: AttentionForm = kernel.startsWith('chunked') ? 'chunked' : 'mha';
  const g = new GraphBuilder(kernel, undefined, undefined, { precision, attentionForm: (shape) => chooseAttentionForm({ ...shape, provider }, form) });
  const d = heads * hd;
  const q = g.toCompute(g.input('q', [b, n, d]));
  const k = g.toCompute(g.input('k', [b, keys, d]));
  const v = g.toCompute(g.input('v', [b, keys, d]));
  if (kernel !== 'matmul-softmax') {
    g.output(g.multiHeadAttention(q, k, v, heads), 'out');
    return g;
  }
  const split = (x: typeof q, len: number): typeof q => g.transpose(g.reshape(x, [b, len, heads, hd]), [0, 2, 1, 3]);
  const scores = g.mul(g.matmul(split(q, n), g.transpose(split(k, keys), [0, 1, 3, 2])), hd ** -0.5);
  const out = g.matmul(g.softmax(scores), split(v, keys));
  g.output(g.reshape(g.transpose(out, [0, 2, 1, 3]), [b, n, d]), 'out');
  return g;
}

export async function runAttentionBench(
  tokens: readonly number[],
  runs: number,
  rt: RuntimeOptions & { batch?: number; maxSeconds?: number; onLog?: (m: string) => void } = {},
): Promise<AttentionRecord[]> {
  const heads = 8;
  const hd = 40;
  const b = rt.batch ?? 1;
  const provider = rt.executionProvider ?? 'cpu';
  const precision = rt.precision ?? 'fp32';
  const deadline = rt.maxSeconds ? performance.now() + rt.maxSeconds * 1000 : Infinity;
  const out: AttentionRecord[] = [];
  for (const n of tokens) {
    for (const kernel of ATTENTION_KERNELS) {
      const keys = kernel.endsWith('todo-2') ? n / 4 : kernel.endsWith('todo-4') ? n / 16 : n;
      const base = { type: 'attention' as const, kernel, batch: b, precision, tokens: n, keys, heads, headDim: hd };
      if (kernel === 'matmul-softmax' && b * heads * n * keys * 4 > MAX_SCORE_BYTES) {
        out.push({ ...base, step: stats([NaN]), gflops: NaN, skipped: `the full attention map needs ${((b * heads * n * keys * 4) / 2 ** 30).toFixed(1)} GiB` });
        continue;
      }
      if (performance.now() >= deadline) return out;
      rt.onLog?.(`attention ${kernel} over ${n} tokens`);
      const g = graph(kernel, b, n, keys, heads, hd, precision, provider);
      const flops = g.flops.attention + g.flops.other;
      const session = await createSession(serializeModel(g.build()), undefined, rt);
      const d = heads * hd;
      const rand = (len: number): Float32Array => Float32Array.from({ length: b * len * d }, (_, i) => Math.sin(i * 0.618));
      const feeds = { q: new ort.Tensor('float32', rand(n), [b, n, d]), k: new ort.Tensor('float32', rand(keys), [b, keys, d]), v: new ort.Tensor('float32', rand(keys), [b, keys, d]) };
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
