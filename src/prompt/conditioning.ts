/**
 * AUTOMATIC1111's text conditioning for one text encoder: chunks of 75 tokens encoded
 * separately and concatenated along the sequence, emphasis weights multiplied into the hidden
 * states with the original mean restored (A1111's default "Original" emphasis).
 */
import type { IntTensor, Tensor } from '../tensor.js';
import { emptyChunk, promptChunks, type ChunkTokenizer, type PromptChunk } from './chunks.js';

/** One text encoder's forward pass: token ids [n, L] → hidden states [n, L, C]. */
export type EncodeTokens = (ids: IntTensor) => Promise<Tensor>;

/**
 * Conditioning for each of `texts`, each [1, L·chunks, C] with one chunk count for all: texts
 * with fewer chunks are padded with empty chunks, as A1111 does for the texts it encodes in one
 * call (the steps of one prompt's edit schedule). The emphasis mean is taken over chunk i of
 * every text together, as A1111 encodes them in one batch.
 */
export async function encodeWeighted(texts: readonly string[], tokenizer: ChunkTokenizer, encode: EncodeTokens): Promise<Tensor[]> {
  if (texts.length === 0) return [];
  const perText = texts.map((t) => promptChunks(t, tokenizer));
  const count = Math.max(...perText.map((c) => c.length));
  const empty = emptyChunk(tokenizer);
  const padded = perText.map((c) => [...c, ...Array<PromptChunk>(count - c.length).fill(empty)]);
  const length = empty.tokens.length;

  // One row at a time: the encoder keeps one session for one input shape, whatever the chunk count.
  const rows: Float32Array[] = [];
  for (let i = 0; i < count; i++) {
    for (const chunks of padded) rows.push((await encode({ data: Int32Array.from(chunks[i]!.tokens), dims: [1, length] })).data);
  }
  const width = rows[0]!.length / length;
  const rowSize = length * width;
  const batchSize = texts.length * rowSize;
  // Rows ordered chunk-major (chunk 0 of every text, then chunk 1, …): one batch per chunk index.
  const z = new Float32Array(count * batchSize);
  rows.forEach((r, k) => z.set(r, k * rowSize));
  for (let i = 0; i < count; i++) {
    applyEmphasis(z.subarray(i * batchSize, (i + 1) * batchSize), padded.map((c) => c[i]!.multipliers), width);
  }
  return padded.map((_, t) => {
    const out = new Float32Array(count * rowSize);
    for (let i = 0; i < count; i++) out.set(z.subarray((i * texts.length + t) * rowSize, (i * texts.length + t + 1) * rowSize), i * rowSize);
    return { data: out, dims: [1, count * length, width] };
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
