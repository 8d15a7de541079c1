import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, writeRandomTinyVAE } from '../src/index.js';
import { parseImageMethod, type ImageRecord } from '../src/bench/image.js';
import { runCli } from './helpers.js';

test('image bench methods: an attention method joined with deepcache-N[-layer-block], ngms-SIGMA and taesd, in any order', () => {
  assert.deepEqual(parseImageMethod('dense').options, { attention: { method: 'dense' } });
  assert.deepEqual(parseImageMethod('todo-auto+deepcache-3+ngms-1').options, {
    attention: { method: 'todo', factor: 'auto', level2Factor: 1 },
    deepcache: { interval: 3, layer: 0, block: 0 },
    sMinUncond: 1,
  });
  assert.deepEqual(parseImageMethod('deepcache-2-1-0+tome-0.5').options, { deepcache: { interval: 2, layer: 1, block: 0 }, attention: { method: 'tome', ratio: 0.5 } });
  assert.deepEqual(parseImageMethod('ngms-0.5').options, { sMinUncond: 0.5 });
  assert.throws(() => parseImageMethod('todo-2+tome-0.5'), /two attention methods/);
  assert.deepEqual(parseImageMethod('todo-2+taesd').options, { attention: { method: 'todo', factor: 2, level2Factor: 1 }, vaeDecoder: 'taesd' });
  assert.throws(() => parseImageMethod('todo-2+fast'), /"fast" is neither deepcache-N or deepcache-N-layer-block nor ngms-SIGMA nor taesd .* nor an attention method/);
  assert.throws(() => parseImageMethod('todo-2@mha+deepcache-2'), /attention forms/);
});

test('bench image (smoke): interleaved whole generations, U-Net runs per pass, fidelity against dense, JSON and Markdown', () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-bench-image-'));
  const out = join(root, 'out');
  const taesd = join(root, 'taesd');
  writeRandomTinyVAE(taesd, 'taesd-tiny', { seed: 1 });
  const r = runCli(root, 'bench', 'image', '--model', BUILTIN_MODEL_DIR, '--size', '32', '--steps', '3', '--sampler', 'ddim', '--methods', 'todo-2+deepcache-2,deepcache-2+ngms-10+taesd', '--taesd', taesd, '--runs', '1', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'image.json'), 'utf8')) as { sampler: string; records: ImageRecord[] };
  assert.equal(json.sampler, 'ddim');
  assert.deepEqual(json.records.map((x) => x.method), ['dense', 'todo-2+deepcache-2', 'deepcache-2+ngms-10+taesd']);
  const [dense, todo, ngms] = json.records;
  assert.deepEqual(dense!.passes[0]!.evaluations, { full: 3, shallow: 0, promptOnly: 0 });
  assert.deepEqual(todo!.passes[0]!.evaluations, { full: 2, shallow: 1, promptOnly: 0 });
  assert.deepEqual(ngms!.passes[0]!.evaluations, { full: 2, shallow: 1, promptOnly: 1 });
  assert.equal(dense!.mse, 0);
  assert.ok(todo!.mse > 0 && ngms!.mse > 0);
  for (const x of json.records) {
    assert.equal(x.total.runsMs.length, 1);
    assert.ok(Math.abs(x.speedup - dense!.total.medianMs / x.total.medianMs) < 1e-9);
    assert.ok(x.textMs >= 0 && x.denoiseMs > 0 && x.decodeMs > 0);
  }
  const md = readFileSync(join(out, 'image.md'), 'utf8');
  assert.match(md, /\| todo-2\+deepcache-2 \| 2 \/ 1 \/ 0 \| /);
  assert.match(md, /\| dense \| 3 \/ 0 \/ 0 \| .* \| 1\.00x \|/);
});
