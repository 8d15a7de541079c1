import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import { writeRandomModel } from '../src/index.js';
import { parseMethod } from '../src/bench/speed.js';
import { mallocSettings } from '../src/runtime/malloc.js';
import { runCli } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-bench-'));
const model = join(root, 'tiny');

before(() => writeRandomModel(model, 'tiny', { seed: 5 }));

const cli = (...args: string[]): ReturnType<typeof runCli> => runCli(root, ...args);

interface Rec {
  type: string;
  method: string;
  size: number[];
  speedup: number;
  flopIdealSpeedup: number;
  flops: { attention: number; other: number; total: number };
  step: { medianMs: number; runsMs: number[] };
  denseInterleaved: { medianMs: number; runsMs: number[] };
  topLevelKeys: number;
  attentionForms: Record<string, number>;
  gflops?: number;
  kernel?: string;
}

test('bench speed (smoke): JSON records with machine, interleaved speed-ups, FLOPs; Markdown and charts', () => {
  const out = join(root, 'speed');
  const r = cli('bench', 'speed', '--model', model, '--sizes', '64,128', '--methods', 'dense,todo-2,todo-2@chunked,tome-0.5', '--runs', '2', '--warmup', '0', '--attention', '256', '--matmul', '64', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'speed.json'), 'utf8')) as { machine: { cores: number; cpu: string; malloc?: string }; records: Rec[]; stoppedEarly: boolean };
  assert.ok(json.machine.cores >= 1 && json.machine.cpu.length > 0);
  // The command line runs with glibc's malloc thresholds (its own, where the environment sets none) and says so.
  if (process.platform === 'linux') assert.equal(json.machine.malloc, mallocSettings() ?? 'MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=65536');
  assert.equal(json.stoppedEarly, false);
  const unet = json.records.filter((x) => x.type === 'unet');
  assert.deepEqual(unet.map((x) => `${x.size[0]}:${x.method}`), ['64:dense', '64:todo-2', '64:todo-2@chunked', '64:tome-0.5', '128:dense', '128:todo-2', '128:todo-2@chunked', '128:tome-0.5']);
  for (const x of unet) {
    assert.equal(x.step.runsMs.length, x.method === 'dense' ? 6 : 2);
    assert.ok(Math.abs(x.speedup - x.denseInterleaved.medianMs / x.step.medianMs) < 1e-9);
    const dense = unet.find((d) => d.method === 'dense' && d.size[0] === x.size[0])!;
    assert.ok(Math.abs(x.flopIdealSpeedup - dense.flops.total / x.flops.total) < 1e-9);
    assert.equal(x.flops.total, x.flops.attention + x.flops.other);
  }
  // At 128px the latent is 16x16: ToDo 2 leaves 8x8 key/value tokens at the top level.
  assert.equal(unet.find((x) => x.size[0] === 128 && x.method === 'todo-2')!.topLevelKeys, 64);
  assert.equal(unet.find((x) => x.size[0] === 128 && x.method === 'dense')!.topLevelKeys, 256);
  // The forced form: every attention chunked, the same FLOPs; the CPU's own choice is MultiHeadAttention.
  const chunked = unet.find((x) => x.size[0] === 128 && x.method === 'todo-2@chunked')!;
  assert.deepEqual(Object.keys(chunked.attentionForms), ['chunked']);
  assert.deepEqual(Object.keys(unet.find((x) => x.size[0] === 128 && x.method === 'todo-2')!.attentionForms), ['mha']);
  assert.equal(chunked.flops.total, unet.find((x) => x.size[0] === 128 && x.method === 'todo-2')!.flops.total);
  assert.ok(json.records.some((x) => x.type === 'matmul' && x.gflops! > 0));
  assert.deepEqual(json.records.filter((x) => x.type === 'attention').map((x) => x.kernel), ['flash', 'flash-todo-2', 'flash-todo-4', 'chunked-todo-2', 'chunked-todo-4', 'matmul-softmax']);
  const md = readFileSync(join(out, 'speed.md'), 'utf8');
  assert.match(md, /\| 128x128 \| 1 \| todo-2 \|/);
  assert.match(readFileSync(join(out, 'speed-speedup.svg'), 'utf8'), /<svg[\s\S]*todo-2[\s\S]*<\/svg>/);
});

test('bench speed --max-seconds stops cleanly with what it measured', () => {
  const out = join(root, 'budget');
  // More runs than any machine finishes in the budget at the first size: the budget cuts them, and the bench ends there.
  const r = cli('bench', 'speed', '--model', model, '--sizes', '64,128', '--methods', 'dense,todo-2', '--runs', '10000', '--attention', '', '--matmul', '0', '--max-seconds', '8', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'speed.json'), 'utf8')) as { records: Rec[]; stoppedEarly: boolean };
  assert.equal(json.stoppedEarly, true);
  assert.deepEqual(json.records.map((x) => `${x.size[0]}:${x.method}`), ['64:dense', '64:todo-2']);
  const todo = json.records[1]!;
  assert.ok(todo.step.runsMs.length > 0 && todo.step.runsMs.length < 10000);
  assert.equal(todo.denseInterleaved.runsMs.length, todo.step.runsMs.length, 'runs come in dense/ToDo pairs');
  assert.match(readFileSync(join(out, 'speed.md'), 'utf8'), /Stopped early by --max-seconds/);
});

test('bench fidelity (smoke): metrics against dense, grid PNG', () => {
  const out = join(root, 'fid');
  const r = cli('bench', 'fidelity', '--sizes', '32', '--limit', '2', '--steps', '3', '--methods', 'dense,todo-2,tome-0.5', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'fidelity.json'), 'utf8')) as { records: { method: string; mse: number; psnr: number; ssim: number; hpf: number }[] };
  assert.equal(json.records.length, 6);
  for (const x of json.records.filter((y) => y.method === 'dense')) {
    assert.equal(x.mse, 0);
    assert.equal(x.ssim, 1);
  }
  for (const x of json.records.filter((y) => y.method !== 'dense')) {
    assert.ok(x.mse > 0 && x.mse < 0.1, `${x.method}: mse ${x.mse}`);
    assert.ok(x.ssim < 1 && x.ssim > 0);
  }
  assert.ok(existsSync(join(out, 'fidelity.md')));
  const grid = decode(readFileSync(join(out, 'fidelity-32.png')));
  assert.ok(grid.width > 3 * 128 && grid.height > 2 * 128, 'three columns and two rows of 4x-scaled images');
});

test('bench method names', () => {
  assert.deepEqual(parseMethod('todo-auto').attention, { method: 'todo', factor: 'auto', level2Factor: 1 });
  assert.deepEqual(parseMethod('todo-2-l2').attention, { method: 'todo', factor: 2, level2Factor: 2 });
  assert.deepEqual(parseMethod('tome-0.75').attention, { method: 'tome', ratio: 0.75 });
  assert.deepEqual(parseMethod('todo-2@chunked'), { label: 'todo-2@chunked', attention: { method: 'todo', factor: 2, level2Factor: 1 }, attentionForm: 'chunked' });
  assert.throws(() => parseMethod('todo-2@flash'), /unknown attention form "flash"/);
  assert.throws(() => parseMethod('todo'), /unknown method "todo"/);
});

test('bench profile --component vae-decoder: profile.json and profile.md by VAE block; --methods belongs to a U-Net', () => {
  const out = join(root, 'profile-vae');
  const r = cli('bench', 'profile', '--model', model, '--component', 'vae-decoder', '--size', '32', '--runs', '1', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'profile.json'), 'utf8')) as { records: { component: string; byPart: { part: string }[] }[] };
  assert.equal(json.records.length, 1);
  assert.equal(json.records[0]!.component, 'vae-decoder');
  assert.ok(json.records[0]!.byPart.some((p) => p.part.startsWith('decoder.up_blocks.0 (')));
  assert.match(readFileSync(join(out, 'profile.md'), 'utf8'), /^# Profile of the vae-decoder at 32x32, batch 1/);
  const bad = cli('bench', 'profile', '--model', model, '--component', 'vae-decoder', '--methods', 'dense', '--out', out);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--methods applies to a U-Net; the vae-decoder has no attention variants/);
  const unknown = cli('bench', 'profile', '--component', 'text-encoder', '--out', out);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /text-encoder.*unet, vae-decoder, vae-encoder/s);
});
