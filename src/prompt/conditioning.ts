/**
 * AUTOMATIC1111's text conditioning: chunks of 75 tokens encoded separately and concatenated
 * along the sequence, emphasis weights multiplied into the hidden states with the original mean
 * restored (A1111's default "Original" emphasis). With several text encoders (SDXL's ViT-L and
 * bigG, A1111's two hijacked sgm embedders) each chunks and weights the prompt with its own
 * tokenizer and the results are concatenated on channels.
 */
import type { IntTensor, Tensor } from '../tensor.js';
import { emptyChunk, promptChunks, type ChunkTokenizer, type PromptChunk } from './chunks.js';

/**
 * Hidden states [1, L, C] and, from an encoder with a projection, the pooled vector [1, P]: one
 * encoder's output for token ids [1, L], or a text's whole conditioning.
 */
export interface TextEmbedding {
  hidden: Tensor;
  pooled?: Tensor;
}

/** One text encoder's forward pass. */
export type EncodeTokens = (ids: IntTensor) => Promise<TextEmbedding>;

/** A text encoder with the tokenizer that feeds it. */
export interface TextEncoding {
  tokenizer: ChunkTokenizer;
  encode: EncodeTokens;
}

/**
 * Conditioning for each of `texts`, all with one chunk count: texts with fewer chunks are padded
 * with empty chunks, as A1111 does for the texts it encodes in one call (the steps of one
 * prompt's edit schedule). The emphasis mean is taken per encoder over chunk i of every text
 * together, as A1111 encodes them in one batch. The pooled vector is the first chunk's,
 * unweighted (A1111's `zs[0].pooled`).
 *
 * Encoders whose tokenizers split a text into different chunk counts (SDXL's two differ on `!`
 * in diffusers folders) are padded with their own empty chunks to the larger count, so their
 * outputs still line up token for token; A1111's torch.cat would fail there instead.
 */
export async function encodeWeighted(texts: readonly string[], encoders: readonly TextEncoding[]): Promise<TextEmbedding[]> {
  if (texts.length === 0) return [];
  const perEncoder = encoders.map((e) => texts.map((t) => promptChunks(t, e.tokenizer)));
  const count = Math.max(...perEncoder.flatMap((perText) => perText.map((c) => c.length)));
  const parts: TextEmbedding[][] = [];
  for (const [k, e] of encoders.entries()) parts.push(await encodeChunks(perEncoder[k]!, count, e));
  return texts.map((_, t) => joinEncoders(parts.map((p) => p[t]!)));
}

/** Several encoders' outputs for one text as one: hidden states concatenated on channels, the pooled vector of the encoder that gives one. */
export function joinEncoders(outs: readonly TextEmbedding[]): TextEmbedding {
  const pooled = outs.find((o) => o.pooled !== undefined)?.pooled;
  return { hidden: concatChannels(outs.map((o) => o.hidden)), ...(pooled ? { pooled } : {}) };
}

/** One encoder's share of encodeWeighted: each text's chunks, padded to `count`. */
async function encodeChunks(perText: PromptChunk[][], count: number, e: TextEncoding): Promise<TextEmbedding[]> {
  const empty = emptyChunk(e.tokenizer);
  const padded = perText.map((c) => [...c, ...Array<PromptChunk>(count - c.length).fill(empty)]);
  const length = empty.tokens.length;

  // One row at a time: the encoder keeps one session for one input shape, whatever the chunk count.
  const rows: TextEmbedding[] = [];
  for (let i = 0; i < count; i++) {
    for (const chunks of padded) rows.push(await e.encode({ data: Int32Array.from(chunks[i]!.tokens), dims: [1, length] }));
  }
  const width = rows[0]!.hidden.data.length / length;
  const rowSize = length * width;
  const batchSize = perText.length * rowSize;
  // Rows ordered chunk-major (chunk 0 of every text, then chunk 1, …): one batch per chunk index.
  const z = new Float32Array(count * batchSize);
  rows.forEach((r, k) => z.set(r.hidden.data, k * rowSize));
  for (let i = 0; i < count; i++) {
    applyEmphasis(z.subarray(i * batchSize, (i + 1) * batchSize), padded.map((c) => c[i]!.multipliers), width);
  }
  return padded.map((_, t) => {
    const out = new Float32Array(count * rowSize);
    for (let i = 0; i < count; i++) out.set(z.subarray((i * perText.length + t) * rowSize, (i * perText.length + t + 1) * rowSize), i * rowSize);
    const pooled = rows[t]!.pooled;
    return { hidden: { data: out, dims: [1, count * length, width] }, ...(pooled ? { pooled } : {}) };
  });
}

/**
 * "Original" emphasis in place on one chunk batch [T, L, C]: z·weight per token, then scaled so
 * the mean over the whole batch is what it was. Unweighted batches are left bit-exact.
 */
function applyEmphasis(z: Float32Array, multipliers: readonly (readonly number[])[], width: number): void {
  if (multipliers.every((m) => m.every((w) => w === 1))) return;
  const before = mean(z);
  const length = multipliers[0]!.length;
  multipliers.forEach((m, t) => {
    for (let k = 0; k < length; k++) {
      const row = z.subarray((t * length + k) * width, (t * length + k + 1) * width);
      for (let c = 0; c < width; c++) row[c] = row[c]! * m[k]!;
    }
  });
  const scale = before / mean(z);
  for (let i = 0; i < z.length; i++) z[i] = z[i]! * scale;
}

function mean(x: Float32Array): number {
  let sum = 0;
  for (const v of x) sum += v;
  return sum / x.length;
}

/** Hidden states [N, L, C1], [N, L, C2], … → [N, L, C1 + C2 + …], token for token (SDXL: ViT-L first). */
export function concatChannels(parts: readonly Tensor[]): Tensor {
  if (parts.length === 1) return parts[0]!;
  const [n, length] = parts[0]!.dims as [number, number, number];
  for (const p of parts) {
    if (p.dims[0] !== n || p.dims[1] !== length) throw new Error(`text encoders disagree on the shape: [${parts.map((q) => q.dims.join(', ')).join('] vs [')}]`);
  }
  const widths = parts.map((p) => p.dims[2]!);
  const total = widths.reduce((a, b) => a + b, 0);
  const out = new Float32Array(n * length * total);
  for (let t = 0; t < n * length; t++) {
    let at = t * total;
    parts.forEach((p, k) => {
      out.set(p.data.subarray(t * widths[k]!, (t + 1) * widths[k]!), at);
      at += widths[k]!;
    });
  }
  return { data: out, dims: [n, length, total] };
}

/**
 * A1111's "pad prompt/negative prompt": the shorter conditioning gets copies of the empty
 * prompt's (one chunk) appended until both have the same length, so they share one batch.
 */
export function padToLength(cond: Tensor, tokens: number, emptyCond: Tensor): Tensor {
  const [, have, width] = cond.dims as [number, number, number];
  const step = emptyCond.dims[1]!;
  if (have === tokens) return cond;
  if (tokens < have || (tokens - have) % step !== 0) {
    throw new Error(`conditioning of ${have} tokens cannot be padded to ${tokens} with chunks of ${step}`);
  }
  const out = new Float32Array(tokens * width);
  out.set(cond.data);
  for (let at = have; at < tokens; at += step) out.set(emptyCond.data, at * width);
  return { data: out, dims: [1, tokens, width] };
}
