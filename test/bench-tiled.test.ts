import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, UPSCALER_PRESETS, writeRandomTinyVAE, writeRandomUpscaler } from '../src/index.js';
import { writeRandomControlNet } from '../src/models/random-controlnet.js';
import { writeRandomModel } from '../src/models/random-model.js';
import { parseMethod } from '../src/bench/speed.js';
import { runTiledBench, tiledTable, type TiledRecord } from '../src/bench/tiled.js';
import { runCli } from './helpers.js';

test('bench tiled (smoke): MultiDiffusion, interleaved whole generations, steps, peak memory, JSON and Markdown', () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-bench-tiled-'));
  const out = join(root, 'out');
  const r = runCli(root, 'bench', 'tiled', '--model', BUILTIN_MODEL_DIR, '--size', '64x32', '--window', '16', '--stride', '8', '--steps', '3', '--methods', 'todo-2', '--runs', '2', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'tiled.json'), 'utf8')) as { machine: { cores: number }; records: TiledRecord[] };
  assert.ok(json.machine.cores >= 1);
  assert.equal(json.records.length, 1);
  const rec = json.records[0]!;
  assert.deepEqual([rec.mode, rec.size, rec.output, rec.method, rec.parts], ['multidiffusion', [64, 32], [64, 32], 'todo-2', 3]);
  assert.deepEqual([rec.total.runsMs.length, rec.denseInterleaved.runsMs.length], [2, 2]);
  assert.equal(rec.step.runsMs.length, 2 * 2, 'the steps after the first, per run');
  assert.ok(Math.abs(rec.speedup - rec.denseInterleaved.medianMs / rec.total.medianMs) < 1e-9);
  assert.ok(rec.peakMiB > 0 && rec.densePeakMiB > 0);
  // The pipeline's own stage times: denoising per step (3 steps a run) and the decode.
  assert.equal(rec.denoiseStep!.runsMs.length, 2);
  assert.ok(rec.denoiseStep!.medianMs > 0 && rec.denseDecode!.medianMs > 0 && rec.decode!.runsMs.length === 2);
  const md = readFileSync(join(out, 'tiled.md'), 'utf8');
  assert.match(md, /\| multidiffusion \| 64x32 → 64x32 \| todo-2 \(ToDo 2\) \| 3 views\/step \|/);
  assert.match(r.stderr, /dense vs todo-2, 2 runs each, interleaved/);
});

test('bench tiled (smoke): SD upscale times the tiles and names them', async () => {
  const records = await runTiledBench({
    model: BUILTIN_MODEL_DIR,
    mode: 'sd-upscale',
    size: [32, 24],
    tiling: {},
    scale: 2,
    tile: [32, 32],
    overlap: 8,
    strength: 0.5,
    steps: 4,
    sampler: 'ddim',
    cfg: 7,
    methods: [parseMethod('todo-2')],
    runs: 1,
  });
  const rec = records[0]!;
  assert.deepEqual([rec.mode, rec.output, rec.parts], ['sd-upscale', [64, 48], 6]);
  // Two steps run per tile: one interval each.
  assert.equal(rec.step.runsMs.length, 6);
  assert.match(tiledTable(records), /\| sd-upscale \| 32x24 → 64x48 \| todo-2 \(ToDo 2\) \| 6 tiles \|/);
  // Every tile's steps count: 6 tiles x 2 steps.
  assert.ok(rec.denoiseStep!.medianMs > 0);
});

test('bench tiled: a one-step MultiDiffusion run (TAESD decoding) has no step interval, but its denoising time per step', async () => {
  const taesd = join(mkdtempSync(join(tmpdir(), 'todo-sd-bench-tiled-taesd-')), 'taesd');
  writeRandomTinyVAE(taesd, 'taesd-tiny', { seed: 1 });
  const [rec] = await runTiledBench({ model: BUILTIN_MODEL_DIR, mode: 'multidiffusion', size: [64, 32], tiling: { window: 16, stride: 8 }, scale: 1, tile: [0, 0], overlap: 0, strength: 1, steps: 1, sampler: 'ddim', cfg: 7, methods: [parseMethod('todo-2')], runs: 1, taesd });
  assert.equal(rec!.decoder, 'taesd');
  assert.equal(rec!.step.runsMs.length, 0);
  assert.equal(rec!.denoiseStep!.runsMs.length, 1);
  assert.match(tiledTable([rec!]), /\| – \| – \| – \| [\d.]+ \/ [\d.]+ \([\d.]+x\) \|/);
});

test('bench tiled: SD upscale with an upscaler model and a ControlNet tile, the first tiles run and the rest extrapolated', () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-bench-tiled-cn-'));
  const [model, cn, esrgan, out] = ['tiny', 'cn', 'esrgan.safetensors', 'out'].map((n) => join(root, n)) as [string, string, string, string];
  writeRandomModel(model, 'tiny');
  writeRandomControlNet(cn, 'controlnet-tiny', { seed: 5 });
  writeRandomUpscaler(esrgan, UPSCALER_PRESETS['compact-x4']!);
  const args = ['bench', 'tiled', '--model', model, '--mode', 'sd-upscale', '--size', '24x16', '--scale', '4', '--tile', '32x32', '--overlap', '8', '--steps', '4', '--methods', 'todo-2', '--runs', '1', '--upscaler', esrgan, '--controlnet', cn, '--out', out];
  const r = runCli(root, ...args, '--max-tiles', '3', '--no-batch-cond-uncond');
  assert.equal(r.code, 0, r.stderr);
  const rec = (JSON.parse(readFileSync(join(out, 'tiled.json'), 'utf8')) as { records: TiledRecord[] }).records[0]!;
  // 96x64 in 32-px tiles overlapping by 8: 4 columns, 3 rows.
  assert.deepEqual([rec.output, rec.parts, rec.tilesRun, rec.upscaler, rec.controlnet], [[96, 64], 12, 3, 'esrgan', `${cn} (tile_resample)`]);
  assert.equal(rec.tile!.runsMs.length, 2, 'the tiles after the first');
  assert.match(r.stderr, /extrapolated from 3 of 12 tiles/);
  const md = readFileSync(join(out, 'tiled.md'), 'utf8');
  assert.match(md, /12 tiles \(3 run, the rest extrapolated\)/);
  assert.match(md, /a guided step's halves as two calls \(--no-batch-cond-uncond\)/);
  const bad = runCli(root, ...args, '--max-tiles', '1');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--max-tiles.*must be|at least 2/);
});
