import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomModel } from '../src/index.js';
import { runCli } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-bench-xl-'));
const model = join(root, 'sdxl-tiny');

before(() => writeRandomModel(model, 'sdxl-tiny', { seed: 3 }));

interface Rec {
  type: string;
  method: string;
  size: number[];
  speedup: number;
  flopIdealSpeedup: number;
  flops: { total: number };
  step: { runsMs: number[] };
  denseInterleaved: { medianMs: number; runsMs: number[] };
  topLevelKeys: number;
}

test('bench speed --one-session on an SDXL U-Net: dense timed inside each ToDo graph, keys counted at the first attention level', () => {
  const out = join(root, 'speed');
  const r = runCli(root, 'bench', 'speed', '--model', model, '--sizes', '256', '--methods', 'dense,todo-2,todo-auto', '--runs', '2', '--warmup', '0', '--one-session', '--attention', '', '--matmul', '0', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const unet = (JSON.parse(readFileSync(join(out, 'speed.json'), 'utf8')) as { records: Rec[] }).records.filter((x) => x.type === 'unet');
  assert.deepEqual(unet.map((x) => x.method), ['dense', 'todo-2', 'todo-auto']);
  const [dense, todo2, auto] = unet as [Rec, Rec, Rec];
  // 256px: latent 32, the first attention level (SDXL: one downsampling) is 16x16.
  assert.equal(dense.topLevelKeys, 256);
  assert.equal(todo2.topLevelKeys, 64);
  // 'auto' keeps a 16-token grid at factor 1: the same graph as dense.
  assert.equal(auto.topLevelKeys, 256);
  assert.equal(auto.flopIdealSpeedup, 1);
  assert.ok(todo2.flopIdealSpeedup > 1);
  // The dense record gathers the dense runs interleaved with both methods.
  assert.equal(dense.step.runsMs.length, 4);
  assert.equal(todo2.denseInterleaved.runsMs.length, 2);
  const refused = runCli(root, 'bench', 'speed', '--model', model, '--sizes', '128', '--methods', 'dense,tome-0.5', '--one-session', '--attention', '', '--matmul', '0', '--out', join(root, 'tome'));
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /one-session benchmarks switch ToDo off inside its own graph; "tome" has no such switch/);
});
