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
