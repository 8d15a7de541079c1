/**
 * Compute precision of a graph. fp16 halves memory traffic and doubles ALU throughput on GPUs;
 * onnxruntime's CPU provider has few fp16 kernels and wraps the others in casts, so fp16 on the
 * CPU only rounds values (it is there to test the fp16 graphs, not to be fast).
 */
import type { ElemType } from './builder.js';

export const PRECISIONS = ['fp32', 'fp16'] as const;
export type Precision = (typeof PRECISIONS)[number];

export function checkPrecision(p: string): Precision {
  if (!(PRECISIONS as readonly string[]).includes(p)) throw new Error(`unknown precision "${p}"; use fp32 or fp16`);
  return p as Precision;
}

/** fp16 on a GPU provider, fp32 on the CPU (whose kernels are fp32). */
export function defaultPrecision(provider: string): Precision {
  return provider === 'cpu' ? 'fp32' : 'fp16';
}

export type FloatType = Extract<ElemType, 'float32' | 'float16'>;

export function elemType(p: Precision): FloatType {
  return p === 'fp16' ? 'float16' : 'float32';
}
