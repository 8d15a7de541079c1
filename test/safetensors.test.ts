import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, truncateSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../src/index.js';
import { f16ToF32 } from '../src/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'todo-sd-st-'));

/** A safetensors file from a hand-written header and data, to build broken files exactly. */
function rawFile(name: string, header: unknown, data: Uint8Array): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

test('round trip: F32, F16, BF16 and I64 tensors with metadata', () => {
  const p = join(dir, 'rt.safetensors');
  const vals = Float32Array.of(1, -2.5, 0.1, 65504, 1e-7, 3);
  writeSafetensors(
    p,
    {
      a: { dtype: 'F32', shape: [2, 3], data: vals },
      b: { dtype: 'F16', shape: [6], data: vals },
      c: { dtype: 'BF16', shape: [3, 2], data: vals },
      d: { dtype: 'I64', shape: [2], data: BigInt64Array.of(7n, -1n) },
    },
    { format: 'pt' },
  );
  const f = SafetensorsFile.open(p);
  assert.deepEqual([...f.tensors.keys()].sort(), ['a', 'b', 'c', 'd']);
  assert.deepEqual(f.metadata, { format: 'pt' });
  assert.deepEqual(f.readFloat32('a'), vals);
  assert.deepEqual(f.info('c').shape, [3, 2]);
  // fp16: exact where representable, nearest otherwise.
  const b = f.readFloat32('b');
  assert.equal(b[0], 1);
  assert.equal(b[3], 65504);
  assert.ok(Math.abs(b[2]! - 0.1) < 1e-4);
  assert.equal(b[4], f16ToF32(2)); // 1e-7 rounds to the subnormal 2·2^-24
  // bf16 keeps 8 bits of mantissa.
  const c = f.readFloat32('c');
  assert.equal(c[1], -2.5);
  assert.ok(Math.abs(c[2]! - 0.1) < 1e-3);
  assert.deepEqual([...f.readInt64('d')], [7n, -1n]);
  // Written atomically: no temporary file left beside it.
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp')), []);
});

test('opening reads only the header (lazy)', () => {
  const p = join(dir, 'lazy.safetensors');
  writeSafetensors(p, { x: { dtype: 'F32', shape: [4], data: Float32Array.of(1, 2, 3, 4) } });
  const f = SafetensorsFile.open(p);
  // Corrupting the data after opening does not matter until the tensor is read.
  const bytes = readFileSync(p);
  bytes[bytes.length - 1] = 0x7f;
  writeFileSync(p, bytes);
  assert.equal(f.info('x').byteLength, 16);
  assert.notEqual(f.readFloat32('x')[3], 4);
});

const cases: [string, () => string, RegExp][] = [
  ['missing file', () => join(dir, 'nope.safetensors'), /nope\.safetensors: file not found/],
  ['shorter than the length prefix', () => { const p = join(dir, 'tiny.safetensors'); writeFileSync(p, Buffer.alloc(5)); return p; }, /file is 5 bytes, too short/],
  [
    'truncated data',
    () => {
      const p = join(dir, 'trunc.safetensors');
      writeSafetensors(p, { w: { dtype: 'F32', shape: [100], data: new Float32Array(100) } });
      truncateSync(p, readFileSync(p).length - 10);
      return p;
    },
    /tensor "w": data ends at byte \d+ but the file has \d+ bytes; the file is truncated/,
  ],
  [
    'truncated header',
    () => {
      const p = join(dir, 'trunch.safetensors');
      writeSafetensors(p, { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
      truncateSync(p, 20);
      return p;
    },
    /header claims \d+ bytes but the file has only 12 .*truncated/,
  ],
  ['header length absurd', () => {
    const p = join(dir, 'huge.safetensors');
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1n << 40n);
    writeFileSync(p, b);
    return p;
  }, /header length \d+ exceeds/],
  ['header not JSON', () => {
    const p = join(dir, 'notjson.safetensors');
    const b = Buffer.alloc(8 + 4);
    b.writeBigUInt64LE(4n);
    b.write('{{{{', 8);
    writeFileSync(p, b);
    return p;
  }, /header is not valid JSON/],
  ['offsets past the end', () => rawFile('past.safetensors', { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4)), /tensor "w": data ends at byte/],
  ['shape and byte length disagree', () => rawFile('shape.safetensors', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), /shape \[3\] × F32 needs 12 bytes but data_offsets span 8/],
  [
    'overlapping ranges',
    () => rawFile('overlap.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)),
    /tensors "a" and "b" have overlapping byte ranges/,
  ],
  ['unknown dtype', () => rawFile('dtype.safetensors', { w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), /tensor "w": unsupported dtype "F8_E4M3"/],
  ['bad offsets', () => rawFile('offs.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, new Uint8Array(8)), /data_offsets \[8,4\] must be/],
];

for (const [name, make, message] of cases) {
  test(`corrupt input gives a named error: ${name}`, () => {
    const p = make();
    assert.throws(() => SafetensorsFile.open(p), (e: Error) => {
      assert.equal(e.name, 'SafetensorsError');
      assert.match(e.message, message);
      assert.ok(e.message.includes(p), 'the error names the file');
      return true;
    });
  });
}
