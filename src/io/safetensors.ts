/**
 * safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and [begin, end) byte range relative to the end of the header, then raw
 * little-endian data. Reading is lazy: opening parses only the header, and every range is
 * validated up front so that a truncated or corrupt file fails on open with a named error.
 */
import { closeSync, openSync, readSync, fstatSync, writeSync, renameSync, rmSync } from 'node:fs';
import { basename } from 'node:path';
import { DTYPE_BYTES, TensorFile, type DType, type TensorInfo } from './tensor-file.js';
import { UserError } from '../errors.js';

export { DTYPE_BYTES, f16ToF32, toFloat32, type DType, type TensorInfo } from './tensor-file.js';

/** The JSON header may not be larger than this (the reference implementation's limit). */
const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends UserError {
  constructor(file: string, message: string) {
    super(`${basename(file)}: ${message} (file: ${file})`);
    this.name = 'SafetensorsError';
  }
}

export class SafetensorsFile extends TensorFile {
  private constructor(path: string, tensors: Map<string, TensorInfo>, metadata: Record<string, string>) {
    super(path, tensors, metadata);
  }

  protected error(message: string): Error {
    return new SafetensorsError(this.path, message);
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SafetensorsError(path, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(e)})`);
    }
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new SafetensorsError(path, `file is ${size} bytes, too short for a safetensors header; the file is truncated or not safetensors`);
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(MAX_HEADER_BYTES)) {
        throw new SafetensorsError(path, `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not safetensors`);
      }
      const hl = Number(headerLen);
      if (8 + hl > size) {
        throw new SafetensorsError(path, `header claims ${hl} bytes but the file has only ${size - 8} after the length prefix; the file is truncated`);
      }
      const headerBuf = Buffer.alloc(hl);
      readSync(fd, headerBuf, 0, hl, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBuf.toString('utf8'));
      } catch (e) {
        throw new SafetensorsError(path, `header is not valid JSON (${(e as Error).message}); the file is corrupt`);
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) {
        throw new SafetensorsError(path, 'header is not a JSON object; the file is corrupt');
      }
      const dataStart = 8 + hl;
      return new SafetensorsFile(path, ...parseHeader(path, header as Record<string, unknown>, dataStart, size));
    } finally {
      closeSync(fd);
    }
  }
}

function parseHeader(
  path: string,
  header: Record<string, unknown>,
  dataStart: number,
  fileSize: number,
): [Map<string, TensorInfo>, Record<string, string>] {
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof entry !== 'object' || entry === null) throw new SafetensorsError(path, `tensor "${name}": header entry is not an object`);
    const dtype = entry.dtype as DType;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw new SafetensorsError(path, `tensor "${name}": unsupported dtype ${JSON.stringify(entry.dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(path, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const offs = entry.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[1] < offs[0]) {
      throw new SafetensorsError(path, `tensor "${name}": data_offsets ${JSON.stringify(offs)} must be [begin, end] with 0 <= begin <= end`);
    }
    const byteLength = offs[1] - offs[0];
    const expected = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (expected !== byteLength) {
      throw new SafetensorsError(path, `tensor "${name}": shape [${shape.join(', ')}] × ${dtype} needs ${expected} bytes but data_offsets span ${byteLength}`);
    }
    if (dataStart + offs[1] > fileSize) {
      throw new SafetensorsError(path, `tensor "${name}": data ends at byte ${dataStart + offs[1]} but the file has ${fileSize} bytes; the file is truncated`);
    }
    tensors.set(name, { name, dtype, shape: shape as number[], offset: dataStart + offs[0], byteLength });
  }
  const sorted = [...tensors.values()].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.offset < prev.offset + prev.byteLength) {
      throw new SafetensorsError(path, `tensors "${prev.name}" and "${cur.name}" have overlapping byte ranges; the file is corrupt`);
    }
  }
  return [tensors, metadata];
}

/** Round-to-nearest-even fp32 → fp16 bits, for a whole array (NaN stays NaN, overflow → ±inf). */
export function encodeF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 112;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      const m = mant | 0x800000;
      const shift = 14 - e;
      let half = m >>> shift;
      const rem = m & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rem > mid || (rem === mid && half & 1)) half++;
      out[i] = sign | half;
    } else {
      // Rounding may carry into the exponent, which is still the right answer (up to inf).
      let half = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
      out[i] = sign | half;
    }
  }
  return out;
}

export interface TensorToWrite {
  dtype: DType;
  shape: readonly number[];
  /**
   * Raw little-endian bytes, or fp32 values to encode as `dtype` (F32, F16 or BF16); a function
   * is called when its turn to be written comes, so large files need one tensor in memory at a time.
   */
  data: Uint8Array | Float32Array | BigInt64Array | (() => Float32Array);
}

function encode(t: TensorToWrite): Uint8Array {
  const data = typeof t.data === 'function' ? t.data() : t.data;
  if (data instanceof BigInt64Array) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (!(data instanceof Float32Array)) return data;
  const src = data;
  switch (t.dtype) {
    case 'F32':
      return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    case 'F16':
      return new Uint8Array(encodeF16(src).buffer);
    case 'BF16': {
      const u = new Uint32Array(Float32Array.from(src).buffer);
      // Round to nearest even on the dropped 16 bits.
      return new Uint8Array(Uint16Array.from(u, (x) => (x + 0x7fff + ((x >>> 16) & 1)) >>> 16).buffer);
    }
    default:
      throw new Error(`cannot encode fp32 values as ${t.dtype}`);
  }
}

/** Writes a safetensors file atomically (temporary name, then rename). */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const entries = Object.entries(tensors);
  let offset = 0;
  for (const [name, t] of entries) {
    const size = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  // Pad the header to 8 bytes so that tensor data is aligned, as the reference writer does.
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    // Tensor by tensor: a full SD U-Net in fp32 is larger than one Buffer may be.
    const fd = openSync(tmp, 'w');
    try {
      writeAll(fd, len);
      writeAll(fd, headerBytes);
      for (const [name, t] of entries) {
        const bytes = encode(t);
        const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
        if (bytes.byteLength !== expected) {
          throw new Error(`writeSafetensors: tensor "${name}" has ${bytes.byteLength} bytes, shape [${t.shape.join(', ')}] × ${t.dtype} needs ${expected}`);
        }
        writeAll(fd, bytes);
      }
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}
