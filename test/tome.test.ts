import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, type Value } from '../src/graph/builder.js';
import { serializeModel } from '../src/graph/serialize.js';
import { createSession, ort } from '../src/runtime/session.js';
import { bipartition, tomeAttention, TomeRandomState } from '../src/attention/tome.js';
import { resolveAttention } from '../src/attention/options.js';
import { loadUNet, writeRandomModel, type AttentionOptions } from '../src/index.js';
import { relL2 } from './helpers.js';

test('bipartition: one destination per full sy×sx cell, as tomesd lays them out', () => {
  assert.deepEqual(bipartition(4, 4, 2, 2).dst, [0, 2, 8, 10]);
  assert.deepEqual(bipartition(4, 4, 2, 2, Int32Array.of(3, 0, 1, 2)).dst, [2, 5, 9, 14]);
  // 5x5: the last row and column are outside the full cells and stay sources.
  const p = bipartition(5, 5, 2, 2);
  assert.deepEqual(p.dst, [0, 2, 10, 12]);
  assert.equal(p.src.length, 21);
  assert.deepEqual(bipartition(6, 6, 3, 2).dst, [0, 3, 12, 15, 24, 27]);
});

/**
 * tomesd's bipartite_soft_matching_random2d + merge(mean) + unmerge, written out plainly on
 * arrays for one batch item (scatter_reduce "mean" includes the destination itself).
 */
function referenceMergeUnmerge(x: Float32Array, n: number, c: number, src: number[], dst: number[], r: number): { merged: number[][]; restored: number[][] } {
  const row = (i: number): number[] => Array.from(x.subarray(i * c, (i + 1) * c));
  const unit = (v: number[]): number[] => {
    const norm = Math.sqrt(v.reduce((s, e) => s + e * e, 0));
    return v.map((e) => e / norm);
  };
  const a = src.map((i) => unit(row(i)));
  const b = dst.map((i) => unit(row(i)));
  const best = a.map((va) => {
    let max = -Infinity;
    let arg = 0;
    b.forEach((vb, j) => {
      const s = va.reduce((acc, e, k) => acc + e * vb[k]!, 0);
      if (s > max) [max, arg] = [s, j];
    });
    return { max, arg };
  });
  const order = best.map((_, i) => i).sort((p, q) => best[q]!.max - best[p]!.max || p - q);
  const merging = order.slice(0, r);
  const kept = order.slice(r);
  const sums = dst.map((i) => row(i));
  const counts = dst.map(() => 1);
  for (const s of merging) {
    const d = best[s]!.arg;
    row(src[s]!).forEach((e, k) => (sums[d]![k]! += e));
    counts[d]!++;
  }
  const means = sums.map((v, d) => v.map((e) => e / counts[d]!));
  const merged = [...kept.map((s) => row(src[s]!)), ...means];
  const restored: number[][] = Array.from({ length: n }, () => []);
  kept.forEach((s) => (restored[src[s]!] = row(src[s]!)));
  dst.forEach((i, d) => (restored[i] = means[d]!));
  merging.forEach((s) => (restored[src[s]!] = means[best[s]!.arg]!));
  return { merged, restored };
}

for (const [h, w, ratio, random] of [
  [6, 6, 0.5, false],
  [7, 5, 0.3, false],
  [6, 8, 0.75, true],
] as const) {
  test(`merge and un-merge on a ${h}x${w} grid, ratio ${ratio}${random ? ', random destinations' : ''}, equal tomesd's definition`, async () => {
    const b = 2;
    const c = 5;
    const n = h * w;
    const g = new GraphBuilder('tome');
    const x = g.input('x', [b, n, c]);
    const variant = tomeAttention({ ratio, sx: 2, sy: 2, random, maxDownsample: 1, merge: { attn1: true, attn2: false, ff: false } }, new TomeRandomState(7));
    const tokens = variant.forBlock(g, x, { key: 'blk', level: 0, attentionLevel: 0, grid: [h, w], latent: [h, w] });
    let merged: Value | undefined;
    const restored = tokens.apply(g, 'attn1', x, (_gg, q) => (merged = q));
    g.output(merged!, 'merged');
    g.output(restored, 'restored');
    const session = await createSession(serializeModel(g.build()), undefined);
    const data = Float32Array.from({ length: b * n * c }, (_, i) => Math.sin(i * 1.37) + Math.cos(i * 0.11));
    const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', data, [b, n, c]) };
    const extra = variant.feeds({ active: true });
    for (const f of extra) if (f.type !== 'float32') feeds[f.name] = new ort.Tensor(f.type, f.data, [...f.dims]);
    const out = await session.run(feeds);
    await session.release();
    const srcIdx = random ? [...(extra[0] as { data: BigInt64Array }).data].map(Number) : bipartition(h, w, 2, 2).src;
    const dstIdx = random ? [...(extra[1] as { data: BigInt64Array }).data].map(Number) : bipartition(h, w, 2, 2).dst;
    assert.equal(extra.length, random ? 2 : 0);
    const r = Math.floor(n * ratio);
    assert.deepEqual(out.merged!.dims, [b, n - r, c]);
    for (let bi = 0; bi < b; bi++) {
      const ref = referenceMergeUnmerge(data.subarray(bi * n * c, (bi + 1) * n * c), n, c, srcIdx, dstIdx, r);
      const gotMerged = Array.from((out.merged!.data as Float32Array).subarray(bi * (n - r) * c, (bi + 1) * (n - r) * c));
      const gotRestored = Array.from((out.restored!.data as Float32Array).subarray(bi * n * c, (bi + 1) * n * c));
      assert.ok(relL2(gotMerged, ref.merged.flat()) < 1e-6, 'merged tokens');
      assert.ok(relL2(gotRestored, ref.restored.flat()) < 1e-6, 'restored tokens');
    }
  });
}

test('ToMe in the U-Net: ratio 0 is dense; seeded random destinations are reproducible', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'todo-sd-tome-')), 'tiny');
  writeRandomModel(dir, 'tiny', { seed: 4 });
  const sample = { data: Float32Array.from({ length: 2 * 4 * 12 * 12 }, (_, i) => Math.cos(i * 0.3)), dims: [2, 4, 12, 12] };
  const text = { data: Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => Math.sin(i) * 0.5), dims: [2, 77, 32] };
  const run = async (attention: AttentionOptions, times = 1): Promise<Float32Array[]> => {
    const unet = await loadUNet(dir, { attention });
    const outs: Float32Array[] = [];
    for (let i = 0; i < times; i++) outs.push((await unet.forward(sample, 400, text)).data);
    await unet.dispose();
    return outs;
  };
  const [dense] = await run({ method: 'dense' });
  const [zero] = await run({ method: 'tome', ratio: 0 });
  assert.ok(relL2(zero!, dense!) < 1e-6);
  const [fixed] = await run({ method: 'tome', ratio: 0.5, random: false });
  assert.ok(relL2(fixed!, dense!) > 1e-4, 'merging changes the output');
  const [a1, a2] = await run({ method: 'tome', ratio: 0.5, seed: 1 }, 2);
  const [b1] = await run({ method: 'tome', ratio: 0.5, seed: 1 });
  const [c1] = await run({ method: 'tome', ratio: 0.5, seed: 2 });
  assert.ok(relL2(b1!, a1!) < 1e-7, 'same seed, same destinations');
  assert.ok(relL2(a2!, a1!) > 1e-6, 'the generator moves on between passes, as in tomesd');
  assert.ok(relL2(c1!, a1!) > 1e-6, 'another seed, other destinations');
});

test('invalid ToMe options give clear errors', () => {
  const bad: [unknown, RegExp][] = [
    [{ method: 'tome', ratio: 0.8 }, /ratio must be in \[0, 0\.75\] \(1 − 1\/\(sx·sy\)\) for sx=2, sy=2; got 0\.8/],
    [{ method: 'tome', ratio: -0.1 }, /ratio must be in/],
    [{ method: 'tome', ratio: 0.5, sx: 0 }, /sx must be an integer >= 1/],
    [{ method: 'tome', ratio: 0.5, maxDownsample: 3 }, /maxDownsample must be 1, 2, 4 or 8/],
    [{ method: 'tome', ratio: 0.5, mergeMlp: 'yes' }, /mergeMlp must be true or false/],
    [{ method: 'tome', ratio: 0.5, use_rand: true }, /unknown option "use_rand"/],
  ];
  for (const [o, re] of bad) assert.throws(() => resolveAttention(o as AttentionOptions), re);
  assert.doesNotThrow(() => resolveAttention({ method: 'tome', ratio: 0.875, sx: 4, sy: 2 }));
});
