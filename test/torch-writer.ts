/**
 * Writes PyTorch weights files as torch.save lays them out (the zip archive since 1.6, the legacy
 * stream before), for tests: an OrderedDict of contiguous tensors, optionally wrapped in a dict
 * (`{'state_dict': …, 'global_step': …}` as A1111 checkpoints, `{'params_ema': …}` as
 * Real-ESRGAN's). The reader is checked against Python-written files in torch-file.test.ts.
 */
import { writeFileSync } from 'node:fs';
import { DTYPE_BYTES, type DType, type TensorFile } from '../src/io/tensor-file.js';
import { crc32 } from '../src/io/zip.js';

export interface TensorSpec {
  dtype: DType;
  shape: readonly number[];
  data: Uint8Array;
}

const STORAGES: Record<DType, string> = { F64: 'Double', F32: 'Float', F16: 'Half', BF16: 'BFloat16', I64: 'Long', I32: 'Int', I16: 'Short', I8: 'Char', U8: 'Byte', BOOL: 'Bool' };

class Pickle {
  private parts: Buffer[] = [];
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  raw(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  global(module: string, name: string): this {
    return this.op(0x63).raw(Buffer.from(`${module}\n${name}\n`));
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return this.op(0x58).raw(len).raw(b);
  }
  int(v: number): this {
    if (v < 2 ** 31) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(v);
      return this.op(0x4a).raw(b);
    }
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(v));
    return this.op(0x8a, 8).raw(b);
  }
  tuple(fill: () => void): this {
    this.op(0x28);
    fill();
    return this.op(0x74);
  }
  orderedDict(): this {
    return this.global('collections', 'OrderedDict').op(0x29, 0x52);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** The pickled object; `storages` collects each tensor's bytes under its key. */
function pickleState(tensors: Record<string, TensorSpec>, legacy: boolean, wrap: string | undefined, extra: Record<string, number>, storages: [string, TensorSpec][]): Buffer {
  const p = new Pickle().op(0x80, 2);
  if (wrap) p.op(0x7d, 0x28).str(wrap);
  p.orderedDict().op(0x28);
  for (const [name, t] of Object.entries(tensors)) {
    const key = String(storages.length);
    storages.push([key, t]);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const strides = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    p.str(name).global('torch._utils', '_rebuild_tensor_v2');
    p.tuple(() => {
      p.tuple(() => {
        p.str('storage').global('torch', `${STORAGES[t.dtype]}Storage`).str(key).str('cpu').int(numel);
        if (legacy) p.op(0x4e);
      }).op(0x51);
      p.int(0)
        .tuple(() => t.shape.forEach((d) => p.int(d)))
        .tuple(() => strides.forEach((d) => p.int(d)))
        .op(0x89)
        .orderedDict();
    }).op(0x52);
  }
  p.op(0x75);
  if (wrap) {
    for (const [k, v] of Object.entries(extra)) p.str(k).int(v);
    p.op(0x75);
  }
  return p.op(0x2e).bytes();
}

/** A stored zip archive; `zip64` writes every size and offset through zip64 records, as archives over 4 GiB need. */
function zip(entries: [string, Uint8Array][], zip64: boolean): Buffer {
  const local: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(20, 4);
    h.writeUInt32LE(crc32(data), 14);
    h.writeUInt32LE(data.length, 18);
    h.writeUInt32LE(data.length, 22);
    h.writeUInt16LE(n.length, 26);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(45, 4);
    c.writeUInt16LE(45, 6);
    c.writeUInt32LE(crc32(data), 16);
    c.writeUInt32LE(zip64 ? 0xffffffff : data.length, 20);
    c.writeUInt32LE(zip64 ? 0xffffffff : data.length, 24);
    c.writeUInt16LE(n.length, 28);
    c.writeUInt32LE(zip64 ? 0xffffffff : offset, 42);
    const extra = Buffer.alloc(zip64 ? 28 : 0);
    if (zip64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(data.length), 4);
      extra.writeBigUInt64LE(BigInt(data.length), 12);
      extra.writeBigUInt64LE(BigInt(offset), 20);
      c.writeUInt16LE(28, 30);
    }
    local.push(h, n, Buffer.from(data));
    central.push(c, n, extra);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 8);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  end.writeUInt32LE(zip64 ? 0xffffffff : cd.length, 12);
  end.writeUInt32LE(zip64 ? 0xffffffff : offset, 16);
  if (!zip64) return Buffer.concat([...local, cd, end]);
  const rec = Buffer.alloc(56);
  rec.writeUInt32LE(0x06064b50, 0);
  rec.writeBigUInt64LE(44n, 4);
  rec.writeBigUInt64LE(BigInt(entries.length), 24);
  rec.writeBigUInt64LE(BigInt(entries.length), 32);
  rec.writeBigUInt64LE(BigInt(cd.length), 40);
  rec.writeBigUInt64LE(BigInt(offset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(offset + cd.length), 8);
  locator.writeUInt32LE(1, 16);
  return Buffer.concat([...local, cd, rec, locator, end]);
}

export function writeTorchFile(
  path: string,
  tensors: Record<string, TensorSpec>,
  o: { format: 'zip' | 'legacy'; wrap?: string; extra?: Record<string, number>; zip64?: boolean },
): void {
  const storages: [string, TensorSpec][] = [];
  const state = pickleState(tensors, o.format === 'legacy', o.wrap, o.extra ?? {}, storages);
  if (o.format === 'zip') {
    writeFileSync(
      path,
      zip([['archive/data.pkl', state], ['archive/byteorder', Buffer.from('little')], ...storages.map(([k, t]): [string, Uint8Array] => [`archive/data/${k}`, t.data]), ['archive/version', Buffer.from('3\n')]], o.zip64 ?? false),
    );
    return;
  }
  const header = [
    new Pickle().op(0x80, 2, 0x8a, 10).raw(Buffer.from('6cfc9c46f9206aa85019', 'hex')).op(0x2e).bytes(),
    new Pickle().op(0x80, 2).int(1001).op(0x2e).bytes(),
    new Pickle().op(0x80, 2, 0x7d, 0x28).str('protocol_version').int(1001).str('little_endian').op(0x88).op(0x75, 0x2e).bytes(),
  ];
  const keys = new Pickle().op(0x80, 2, 0x5d, 0x28);
  storages.forEach(([k]) => keys.str(k));
  const data = storages.flatMap(([, t]) => {
    const n = Buffer.alloc(8);
    n.writeBigInt64LE(BigInt(t.data.length / DTYPE_BYTES[t.dtype]));
    return [n, Buffer.from(t.data)];
  });
  writeFileSync(path, Buffer.concat([...header, state, keys.op(0x65, 0x2e).bytes(), ...data]));
}

/** The tensors of `file`, ready to write again in another format; `rename` gives each one's new name, undefined drops it. */
export function tensorsOf(file: TensorFile, rename: (name: string) => string | undefined = (n) => n): Record<string, TensorSpec> {
  const out: Record<string, TensorSpec> = {};
  for (const t of file.tensors.values()) {
    const name = rename(t.name);
    if (name !== undefined) out[name] = { dtype: t.dtype, shape: t.shape, data: file.readBytes(t.name) };
  }
  return out;
}
