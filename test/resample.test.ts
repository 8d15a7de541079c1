import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resample, type ResampleFilter } from '../src/image/resample.js';
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
