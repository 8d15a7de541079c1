import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/graph/builder.js';
import { serializeModel } from '../src/graph/serialize.js';
import { WeightRecorder } from '../src/graph/weights.js';
import { createSession, ort } from '../src/runtime/session.js';
import { downsampleTokens, nearestSourceIndex, TODO_MODES, type TodoMode } from '../src/attention/todo.js';
import { resolveAttention } from '../src/attention/options.js';
import { ARCHITECTURE_CONFIGS } from '../src/models/architectures.js';
import { buildUNetGraph, parseUNetConfig } from '../src/models/unet.js';
import { autoTodoFactor, loadUNet, writeRandomModel, type AttentionOptions } from '../src/index.js';
import { relL2 } from './helpers.js';

/** Runs downsampleTokens alone on tokens [1, h·w, c] through onnxruntime. */
async function runDownsample(x: Float32Array, h: number, w: number, c: number, k: number, mode: TodoMode): Promise<{ data: Float32Array; dims: number[] }> {
  const g = new GraphBuilder('down');
  const inp = g.input('x', [1, h * w, c]);
  g.output(downsampleTokens(g, inp, [h, w], k, mode), 'y');
  const session = await createSession(serializeModel(g.build()), undefined);
  const out = (await session.run({ x: new ort.Tensor('float32', x, [1, h * w, c]) })).y!;
  await session.release();
  return { data: out.data as Float32Array, dims: [...out.dims] };
}

/** The modes as PyTorch defines them (F.interpolate with size=(h//k, w//k); avg/max_pool2d with kernel = stride = k), one channel. */
function reference(img: (y: number, x: number) => number, h: number, w: number, k: number, mode: TodoMode): number[] {
  const nh = Math.floor(h / k);
  const nw = Math.floor(w / k);
  const out: number[] = [];
  for (let i = 0; i < nh; i++) {
    for (let j = 0; j < nw; j++) {
      if (mode === 'nearest' || mode === 'nearest-exact') {
        // Written independently of the implementation: src = floor(dst·scale) or floor((dst+0.5)·scale), scale = in/out in float32.
        const sy = Math.min(h - 1, Math.floor(Math.fround((mode === 'nearest' ? i : i + 0.5) * Math.fround(h / nh))));
        const sx = Math.min(w - 1, Math.floor(Math.fround((mode === 'nearest' ? j : j + 0.5) * Math.fround(w / nw))));
        out.push(img(sy, sx));
      } else if (mode === 'bilinear') {
        const src = (d: number, n: number, size: number): [number, number, number] => {
          const s = Math.max(0, (d + 0.5) * (size / n) - 0.5);
          const i0 = Math.min(Math.floor(s), size - 1);
          return [i0, Math.min(i0 + 1, size - 1), s - i0];
        };
        const [y0, y1, ly] = src(i, nh, h);
        const [x0, x1, lx] = src(j, nw, w);
        out.push((1 - ly) * ((1 - lx) * img(y0, x0) + lx * img(y0, x1)) + ly * ((1 - lx) * img(y1, x0) + lx * img(y1, x1)));
      } else {
        const vals: number[] = [];
        for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) vals.push(img(i * k + a, j * k + b));
        out.push(mode === 'max-pool' ? Math.max(...vals) : vals.reduce((s, v) => s + v, 0) / vals.length);
      }
    }
  }
  return out;
}

test('pooling modes refuse a fractional factor with a clear error', () => {
  const g = new GraphBuilder('down');
  const x = g.input('x', [1, 16 * 12, 3]);
  assert.throws(() => downsampleTokens(g, x, [16, 12], 1.5, 'avg-pool'), /avg-pool pools whole k x k windows and needs an integer factor; got 1.5/);
});

test("PyTorch's nearest index rule, also on grids that the factor does not divide", () => {
  assert.deepEqual(Array.from({ length: 12 }, (_, i) => nearestSourceIndex(i, 24, 12, false)), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]);
  assert.deepEqual(Array.from({ length: 12 }, (_, i) => nearestSourceIndex(i, 24, 12, true)), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]);
  // 25 → 12: scale 25/12, so the picks drift off the even grid.
  assert.deepEqual(Array.from({ length: 12 }, (_, i) => nearestSourceIndex(i, 25, 12, false)), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]);
  assert.deepEqual(Array.from({ length: 8 }, (_, i) => nearestSourceIndex(i, 26, 8, false)), [0, 3, 6, 9, 13, 16, 19, 22]);
  assert.deepEqual(Array.from({ length: 8 }, (_, i) => nearestSourceIndex(i, 26, 8, true)), [1, 4, 8, 11, 14, 17, 21, 24]);
});

// Fractional factors (the A1111 extension's 1.5, 2.5, …) only for the modes that interpolate.
const fractional = [
  [16, 12, 1.5],
  [13, 9, 2.5],
] as const;

for (const mode of TODO_MODES) {
  for (const [h, w, k] of [
    [8, 12, 2],
    [9, 13, 2],
    [11, 7, 3],
    [26, 17, 4],
    ...(mode.endsWith('pool') ? [] : fractional),
  ] as const) {
    test(`downsampling "${mode}" by ${k} on a ${h}x${w} grid matches PyTorch's definition`, async () => {
      const c = 3;
      const x = Float32Array.from({ length: h * w * c }, (_, i) => Math.sin(i * 0.731) * 2 + (i % 5));
      const out = await runDownsample(x, h, w, c, k, mode);
      const nh = Math.floor(h / k);
      const nw = Math.floor(w / k);
      assert.deepEqual(out.dims, [1, nh * nw, c]);
      for (let ch = 0; ch < c; ch++) {
        const ref = reference((y, xx) => x[(y * w + xx) * c + ch]!, h, w, k, mode);
        const got = Array.from({ length: nh * nw }, (_, t) => out.data[t * c + ch]!);
        assert.ok(relL2(got, ref) < 1e-6, `channel ${ch}: ${relL2(got, ref)}`);
      }
    });
  }
}

test("'auto' factor: 512 → 1, 768 → 1, 1024 → 2, 1536 → 3, 2048 → 4 (SD's latent = px / 8)", () => {
  assert.deepEqual([512, 768, 1024, 1536, 2048].map((px) => autoTodoFactor([px / 8, px / 8])), [1, 1, 2, 3, 4]);
  assert.equal(autoTodoFactor([1216 / 8, 768 / 8]), 1);
  assert.equal(autoTodoFactor([2048 / 8, 1024 / 8]), 2);
});

/** Key/value tokens reaching each attention of a graph, by scope. */
function attentionWork(attention: AttentionOptions, px: [number, number]): Map<string, { queries: number; keys: number }> {
  const cfg = parseUNetConfig(ARCHITECTURE_CONFIGS.sd15.unet);
  const g = buildUNetGraph(cfg, new WeightRecorder(), { batch: 1, height: px[0] / 8, width: px[1] / 8, textLength: 77 }, resolveAttention(attention).variant({ latent: [px[0] / 8, px[1] / 8] }));
  return new Map(g.attentionCalls.map((a) => [a.scope, { queries: a.queries, keys: a.keys }]));
}

for (const [px, k, k2] of [
  [[1024, 1024], 2, 1],
  [[768, 1216], 3, 2],
] as const) {
  test(`SD 1.5 graph at ${px[0]}x${px[1]}: ToDo ${k} (level 2: ${k2}) cuts key/value tokens by k² at its levels only`, () => {
    const dense = attentionWork({ method: 'dense' }, [...px]);
    const todo = attentionWork({ method: 'todo', factor: k, level2Factor: k2 }, [...px]);
    assert.equal(dense.size, 32); // 16 transformer blocks × (attn1, attn2)
    assert.deepEqual([...todo.keys()], [...dense.keys()]);
    const [h0, w0] = [px[0] / 8, px[1] / 8];
    const [h1, w1] = [h0 / 2, w0 / 2];
    let level0 = 0;
    let level1 = 0;
    for (const [scope, d] of dense) {
      const t = todo.get(scope)!;
      assert.equal(t.queries, d.queries, `${scope}: every query is kept`);
      const isSelf = scope.endsWith('attn1');
      if (isSelf && d.queries === h0 * w0) {
        level0++;
        assert.equal(t.keys, Math.floor(h0 / k) * Math.floor(w0 / k), scope);
      } else if (isSelf && d.queries === h1 * w1) {
        level1++;
        assert.equal(t.keys, Math.floor(h1 / k2) * Math.floor(w1 / k2), scope);
      } else {
        assert.equal(t.keys, d.keys, `${scope}: unchanged`);
      }
    }
    assert.equal(level0, 5); // down_blocks.0 (2) + up_blocks.3 (3)
    assert.equal(level1, 5);
  });
}

test('ToDo stopAt: one graph, dense when switched off, downsampled when on', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'todo-sd-stop-')), 'tiny');
  writeRandomModel(dir, 'tiny', { seed: 2 });
  const sample = { data: Float32Array.from({ length: 4 * 12 * 10 }, (_, i) => Math.cos(i)), dims: [1, 4, 12, 10] };
  const text = { data: Float32Array.from({ length: 77 * 32 }, (_, i) => Math.sin(i) * 0.5), dims: [1, 77, 32] };
  const run = async (attention: AttentionOptions, active?: boolean): Promise<Float32Array> => {
    const unet = await loadUNet(dir, { attention });
    const out = await unet.forward(sample, 600, text, { attentionActive: active });
    await unet.dispose();
    return out.data;
  };
  const dense = await run({ method: 'dense' });
  const todo = await run({ method: 'todo', factor: 2 });
  const switchable = { method: 'todo', factor: 2, stopAt: 0.5 } as const;
  assert.ok(relL2(todo, dense) > 1e-3, 'ToDo changes the output');
  assert.ok(relL2(await run(switchable, true), todo) < 1e-6);
  assert.ok(relL2(await run(switchable, false), dense) < 1e-6);
});

test('invalid attention options give clear errors', () => {
  const bad: [unknown, RegExp][] = [
    [{ method: 'todo', factor: 0 }, /factor must be a number >= 1/],
    [{ method: 'todo', factor: '2' }, /factor must be a number >= 1/],
    [{ method: 'todo', factor: 1.5, mode: 'avg-pool' }, /factor 1.5 is fractional, but mode "avg-pool" pools whole k x k windows/],
    [{ method: 'todo', factor: 2, level2Factor: 2.5, mode: 'max-pool' }, /level2Factor 2.5 is fractional, but mode "max-pool"/],
    [{ method: 'todo', factor: 2, mode: 'bicubic' }, /unknown ToDo mode "bicubic"; use one of nearest, nearest-exact, avg-pool, max-pool, bilinear/],
    [{ method: 'todo', factor: 2, stopAt: 1.5 }, /stopAt must be a fraction/],
    [{ method: 'todo', factor: 2, level2: 2 }, /unknown option "level2"/],
    [{ method: 'flash' }, /unknown method "flash"/],
  ];
  for (const [o, re] of bad) assert.throws(() => resolveAttention(o as AttentionOptions), re);
  for (const mode of ['nearest', 'nearest-exact', 'bilinear'] as const) {
    assert.equal(resolveAttention({ method: 'todo', factor: 1.5, mode }).options.method, 'todo', `${mode} takes fractional factors`);
  }
});
