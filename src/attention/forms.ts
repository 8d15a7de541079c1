/**
 * How an attention is computed, chosen per execution provider and shape. Every form is exact
 * (the same softmax(QKᵀ/√d)·V); they differ in speed only:
 *
 * - `mha`: com.microsoft.MultiHeadAttention. On the CPU a tiled (flash) kernel; on WebGPU a
 *   FlashAttention shader that gives each workgroup a tile of queries of one head and walks
 *   every key in small steps (16 in the versions read). On an H200 it ran the ToDo shape (4x
 *   fewer keys) at half the dense throughput (NOTES: 6.6 vs 13.0 TFLOP/s in fp32): per query
 *   the work shrinks 4x while the per-workgroup costs (loading queries, writing outputs,
 *   launching workgroups) do not. Which of these dominates has not been measured yet.
 * - `chunked`: queries in chunks, each MatMul → Softmax → MatMul over all keys. One chunk's
 *   map is materialised, so it only pays where the keys are few (ToDo's shape): the two MatMuls
 *   are large and regular however short the key axis is.
 *
 * The GPU rule in chooseAttentionForm is the hypothesis that scripts/gpu-bench.sh's
 * attention micro-benchmark tests; change it when that says otherwise.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { UserError } from '../errors.js';

export const ATTENTION_FORMS = ['mha', 'chunked'] as const;
export type AttentionForm = (typeof ATTENTION_FORMS)[number];

export interface AttentionChoice {
  form: AttentionForm;
  /** Queries per chunk (`chunked` only). */
  chunk?: number;
}

/** What the selector sees of one attention. */
export interface AttentionShape {
  batch: number;
  queries: number;
  keys: number;
  heads: number;
  /** Bytes per element of the compute type (4 or 2). */
  elementBytes: number;
  provider: string;
}

/** One chunk's attention map (batch · heads · chunk · keys) stays under this. */
export const CHUNK_MAP_BYTES = 256 * 2 ** 20;
/** Below this many queries per chunk the MatMuls are too small to beat the fused kernel. */
const MIN_CHUNK = 1024;

export function checkAttentionForm(v: string): AttentionForm | 'auto' {
  if (v === 'auto' || (ATTENTION_FORMS as readonly string[]).includes(v)) return v as AttentionForm | 'auto';
  throw new UserError(`unknown attention form "${v}"; use auto, ${ATTENTION_FORMS.join(', ')}`);
}

/** The largest query chunk whose attention map fits CHUNK_MAP_BYTES (at least 1, at most all queries). */
export function chunkSize(s: AttentionShape): number {
  const perQuery = s.batch * s.heads * s.keys * s.elementBytes;
  return Math.max(1, Math.min(s.queries, Math.floor(CHUNK_MAP_BYTES / perQuery)));
}

/**
 * The form for one attention. The CPU always takes `mha` (its flash kernel ran 3.2x faster than
 * MatMul-Softmax-MatMul here). A GPU provider takes `chunked` for ToDo-shaped attention (at
 * least 4x fewer keys than queries) when a chunk of MIN_CHUNK queries or more fits, `mha`
 * otherwise. `override` forces a form (for measurements and tests).
 */
export function chooseAttentionForm(s: AttentionShape, override: AttentionForm | 'auto' = 'auto'): AttentionChoice {
  if (override === 'mha') return { form: 'mha' };
  if (override === 'chunked') return { form: 'chunked', chunk: chunkSize(s) };
  if (s.provider === 'cpu' || s.keys * 4 > s.queries) return { form: 'mha' };
  const chunk = chunkSize(s);
  return chunk >= MIN_CHUNK ? { form: 'chunked', chunk } : { form: 'mha' };
}

/**
 * Query-chunked attention: q [B, S, D], k and v [B, L, D] → [B, S, D]. Queries are scaled by
 * 1/√d before the product (as the fused kernels do) so that fp16 scores stay small.
 */
export function chunkedAttention(g: GraphBuilder, q: Value, k: Value, v: Value, heads: number, chunk: number): Value {
  const [b, s, d] = q.shape as [number, number, number];
  const l = k.dim(1);
  const hd = d / heads;
  const split = (x: Value, n: number, perm: readonly number[]): Value => g.transpose(g.reshape(x, [b, n, heads, hd]), perm);
  const qh = split(g.mul(q, hd ** -0.5), s, [0, 2, 1, 3]);
  const kt = split(k, l, [0, 2, 3, 1]);
  const vh = split(v, l, [0, 2, 1, 3]);
  const outs: Value[] = [];
  for (let start = 0; start < s; start += chunk) {
    const qc = chunk >= s ? qh : g.slice(qh, 2, start, Math.min(s, start + chunk));
    const n = qc.dim(2);
    const scores = g.op('MatMul', [qc, kt], {}, [b, heads, n, l]);
    outs.push(g.op('MatMul', [g.softmax(scores), vh], {}, [b, heads, n, hd]));
  }
  const out = outs.length === 1 ? outs[0]! : g.concat(outs, 2);
  return g.reshape(g.transpose(out, [0, 2, 1, 3]), [b, s, d]);
}
