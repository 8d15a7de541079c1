import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR } from '../src/index.js';
import type { HiresRecord } from '../src/bench/hires.js';
import { runCli } from './helpers.js';

test('bench hires (smoke): interleaved whole generations, per-pass attention, JSON and Markdown', () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-bench-hires-'));
  const out = join(root, 'out');
  const r = runCli(root, 'bench', 'hires', '--model', BUILTIN_MODEL_DIR, '--size', '32', '--steps', '2', '--hires-steps', '4', '--methods', 'todo-2', '--runs', '2', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'hires.json'), 'utf8')) as { machine: { cores: number }; records: HiresRecord[] };
  assert.ok(json.machine.cores >= 1);
  const [rec] = json.records;
  assert.equal(json.records.length, 1);
  assert.deepEqual([rec!.size, rec!.target, rec!.method], [[32, 32], [64, 64], 'todo-2']);
  assert.deepEqual(rec!.passes.map((p) => [p.steps, p.attention.method]), [[2, 'dense'], [2, 'todo']]);
  assert.equal(rec!.total.runsMs.length, 2);
  assert.equal(rec!.denseInterleaved.runsMs.length, 2);
  assert.ok(Math.abs(rec!.speedup - rec!.denseInterleaved.medianMs / rec!.total.medianMs) < 1e-9);
  assert.equal(rec!.secondPassStep.runsMs.length, 2, 'one step after the first per run');
  const md = readFileSync(join(out, 'hires.md'), 'utf8');
  assert.match(md, /\| 32x32 → 64x64 \| todo-2 \| 2 \(dense\) \+ 2 \(ToDo 2\) \|/);
  assert.match(r.stderr, /dense vs todo-2, 2 runs each, interleaved/);
});
