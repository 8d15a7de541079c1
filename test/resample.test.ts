import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encode } from 'fast-png';
import { resample, type ResampleFilter } from '../src/image/resample.js';
import { decodePngRgb } from '../src/io/png.js';
import { repoRoot } from './helpers.js';

interface PillowCase {
  src: number[];
  w: number;
  h: number;
  W: number;
  H: number;
  f: ResampleFilter;
  ref: number[];
}

// test/data/pillow-resize.json: outputs of Pillow 9.4's Image.resize on random RGB images (its "generator" field says how).
const pillow = JSON.parse(readFileSync(join(repoRoot, 'test', 'data', 'pillow-resize.json'), 'utf8')) as { cases: PillowCase[] };

for (const c of pillow.cases) {
  test(`Pillow ${c.f} ${c.w}x${c.h} → ${c.W}x${c.H}: identical bytes`, () => {
    const out = resample({ width: c.w, height: c.h, channels: 3, data: Uint8Array.from(c.src) }, c.W, c.H, c.f);
    assert.deepEqual([out.width, out.height], [c.W, c.H]);
    assert.deepEqual(Array.from(out.data), c.ref);
  });
}

test('resampling keeps flat colours, leaves a same-size image alone and works on one channel', () => {
  const flat = { width: 13, height: 7, channels: 1, data: new Uint8Array(91).fill(77) };
  for (const [w, h] of [[40, 3], [5, 29], [13, 7]] as const) {
    assert.ok(resample(flat, w, h).data.every((v) => v === 77), `${w}x${h}`);
  }
  assert.throws(() => resample(flat, 0, 4), /target size must be positive integers/);
});

test('PNGs of every colour type become RGB; a file that is not a PNG is refused clearly', () => {
  const rgba = encode({ width: 2, height: 1, data: Uint8Array.from([10, 20, 30, 0, 40, 50, 60, 255]), channels: 4, depth: 8 });
  const a = decodePngRgb(rgba, 'a.png');
  assert.deepEqual(Array.from(a.data), [10, 20, 30, 40, 50, 60]);
  assert.deepEqual(Array.from(a.alpha!), [0, 255]);
  const grey = decodePngRgb(encode({ width: 2, height: 1, data: Uint8Array.from([7, 200]), channels: 1, depth: 8 }), 'g.png');
  assert.deepEqual(Array.from(grey.data), [7, 7, 7, 200, 200, 200]);
  assert.equal(grey.alpha, undefined);
  const deep = decodePngRgb(encode({ width: 1, height: 1, data: Uint16Array.from([0x1234, 0xabcd, 0xff00]), channels: 3, depth: 16 }), 'd.png');
  assert.deepEqual(Array.from(deep.data), [0x12, 0xab, 0xff]);
  assert.throws(() => decodePngRgb(new TextEncoder().encode('GIF89a not a png'), 'x.gif'), /x\.gif is not a PNG file; convert it to PNG first/);
  const truncated = rgba.subarray(0, 30);
  assert.throws(() => decodePngRgb(truncated, 't.png'), /t\.png is not a readable PNG/);
});
