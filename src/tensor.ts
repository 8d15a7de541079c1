/** A dense fp32 tensor as the public API passes it around; onnxruntime's Tensor satisfies it. */
export interface Tensor {
  data: Float32Array;
  dims: readonly number[];
}

/** Integer tensor (token ids). */
export interface IntTensor {
  data: Int32Array | BigInt64Array;
  dims: readonly number[];
}

export function numel(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function tensor(data: Float32Array, dims: readonly number[]): Tensor {
  if (data.length !== numel(dims)) {
    throw new Error(`tensor data has ${data.length} elements but dims [${dims.join(', ')}] need ${numel(dims)}`);
  }
  return { data, dims: [...dims] };
}

/** Tensors of equal row shape stacked along the batch, [B1, …] + [B2, …] → [B1 + B2, …]. */
export function concatBatch(...parts: readonly Tensor[]): Tensor {
  const data = new Float32Array(parts.reduce((a, t) => a + t.data.length, 0));
  let offset = 0;
  for (const t of parts) {
    data.set(t.data, offset);
    offset += t.data.length;
  }
  return { data, dims: [parts.reduce((a, t) => a + t.dims[0]!, 0), ...parts[0]!.dims.slice(1)] };
}

/** The batch twice over, [B, …] → [2B, …]: guidance's negative and prompt halves see the same latents. */
export function doubleBatch(x: Tensor): Tensor {
  const data = new Float32Array(2 * x.data.length);
  data.set(x.data);
  data.set(x.data, x.data.length);
  return { data, dims: [2 * x.dims[0]!, ...x.dims.slice(1)] };
}
