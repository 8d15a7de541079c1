/**
 * What every weights file format gives the rest of the code: a lazy, validated index of named
 * tensors (dtype, shape, where their bytes lie in the file) and reads of one tensor at a time.
 * safetensors.ts and torch-file.ts fill the index; the reads are shared here.
 */
import { closeSync, openSync, readSync } from 'node:fs';

/** Element types, by safetensors' names. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<DType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte offset of the first element in the file. */
  offset: number;
  /** Bytes of the tensor's values (shape × dtype). */
  byteLength: number;
  /**
   * Element strides, only for a tensor stored as a non-contiguous view of its storage (a
   * PyTorch file can hold one): its values are then not one byte range of the file.
   */
  strides?: number[];
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export abstract class TensorFile {
  protected constructor(
    readonly path: string,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  /** An error of this file's format, naming the file. */
  protected abstract error(message: string): Error;

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw this.error(`tensor "${name}" not found`);
    return t;
  }

  /** Raw little-endian bytes of one tensor, in row-major order (a strided view is gathered). */
  readBytes(name: string): Buffer {
    const t = this.info(name);
    const el = DTYPE_BYTES[t.dtype];
    const span = t.strides ? (t.shape.some((d) => d === 0) ? 0 : t.shape.reduce((s, d, i) => s + (d - 1) * t.strides![i]!, 0) + 1) * el : t.byteLength;
    const fd = openSync(this.path, 'r');
    let raw: Buffer;
    try {
      raw = Buffer.alloc(span);
      const n = readSync(fd, raw, 0, span, t.offset);
      if (n !== span) throw this.error(`tensor "${name}": read ${n} of ${span} bytes; the file changed or is truncated`);
    } finally {
      closeSync(fd);
    }
    return t.strides ? gather(raw, t.shape, t.strides, el) : raw;
  }

  /** One tensor as fp32, converting F16/BF16/F64/integers. */
  readFloat32(name: string): Float32Array {
    return toFloat32(this.readBytes(name), this.info(name).dtype);
  }

  /** One integer tensor as int64 values. */
  readInt64(name: string): BigInt64Array {
    const t = this.info(name);
    const bytes = copyAligned(this.readBytes(name));
    if (t.dtype === 'I64') return new BigInt64Array(bytes.buffer);
    if (t.dtype === 'I32') return BigInt64Array.from(new Int32Array(bytes.buffer), (v) => BigInt(v));
    throw this.error(`tensor "${name}" is ${t.dtype}, not an integer tensor`);
  }
}

/** The row-major copy of a strided view whose first element is at byte 0 of `raw`. */
function gather(raw: Buffer, shape: readonly number[], strides: readonly number[], el: number): Buffer {
  const out = Buffer.alloc(numelOf(shape) * el);
  const index = new Array<number>(shape.length).fill(0);
  for (let o = 0; o < out.length; o += el) {
    const src = index.reduce((s, v, i) => s + v * strides[i]!, 0) * el;
    raw.copy(out, o, src, src + el);
    for (let ax = shape.length - 1; ax >= 0; ax--) {
      if (++index[ax]! < shape[ax]!) break;
      index[ax] = 0;
    }
  }
  return out;
}

function copyAligned(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function toFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  const buf = copyAligned(bytes).buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf);
    case 'F64':
      return Float32Array.from(new Float64Array(buf));
    case 'F16': {
      const src = new Uint16Array(buf);
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = f16ToF32(src[i]!);
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(buf);
      const out = new Float32Array(src.length);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) u[i] = src[i]! << 16;
      return out;
    }
    case 'I64':
      return Float32Array.from(new BigInt64Array(buf), (v) => Number(v));
    case 'I32':
      return Float32Array.from(new Int32Array(buf));
    case 'I16':
      return Float32Array.from(new Int16Array(buf));
    case 'I8':
      return Float32Array.from(new Int8Array(buf));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(new Uint8Array(buf));
  }
}
