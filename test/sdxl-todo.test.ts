import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAttention } from '../src/attention/options.js';
import { WeightRecorder } from '../src/graph/weights.js';
import { ARCHITECTURE_CONFIGS } from '../src/models/architectures.js';
import { attentionLevels, buildUNetGraph, parseUNetConfig } from '../src/models/unet.js';
import { decode } from 'fast-png';
import { readPngText, StableDiffusion, writeRandomModel, type AttentionOptions } from '../src/index.js';
import { runCli } from './helpers.js';

/** Self-attention key/value tokens per query count (i.e. per level), from the graph itself. */
function selfAttentionKeys(arch: 'sdxl' | 'sd15', attention: AttentionOptions, px: number): Map<number, Set<number>> {
  const cfg = parseUNetConfig(ARCHITECTURE_CONFIGS[arch].unet);
  const latent = px / 8;
  const g = buildUNetGraph(cfg, new WeightRecorder(), { batch: 1, height: latent, width: latent, textLength: 77 }, resolveAttention(attention).variant({ latent: [latent, latent] }));
  const byLevel = new Map<number, Set<number>>();
  for (const a of g.attentionCalls.filter((c) => c.scope.endsWith('attn1'))) {
    if (!byLevel.has(a.queries)) byLevel.set(a.queries, new Set());
    byLevel.get(a.queries)!.add(a.keys);
  }
  return byLevel;
}

test('attention levels: SD 1.5 has self-attention at levels 0-2 (and the mid block at 3), SDXL only at 1 and 2', () => {
  assert.deepEqual(attentionLevels(parseUNetConfig(ARCHITECTURE_CONFIGS.sd15.unet)), [0, 1, 2, 3]);
  assert.deepEqual(attentionLevels(parseUNetConfig(ARCHITECTURE_CONFIGS.sdxl.unet)), [1, 2]);
});

test('SDXL ToDo: factor acts on the first attention level (latent/2), level2Factor on the next (latent/4)', () => {
  const l1 = 64 * 64; // 1024px: latent 128, level 1 is 64x64
  const l2 = 32 * 32;
  const keys = selfAttentionKeys('sdxl', { method: 'todo', factor: 2, level2Factor: 2 }, 1024);
  assert.deepEqual([...keys.get(l1)!], [l1 / 4]);
  assert.deepEqual([...keys.get(l2)!], [l2 / 4]);
  assert.deepEqual([...selfAttentionKeys('sdxl', { method: 'todo', factor: 1.5 }, 1024).get(l1)!], [42 * 42], 'fractional: ⌊64 / 1.5⌋ a side');
});

test("SDXL 'auto': 1024² → off (the first attention grid is 64x64), 2048² → 2; SD 1.5 unchanged (1024² → 2)", () => {
  const auto: AttentionOptions = { method: 'todo', factor: 'auto' };
  assert.deepEqual([...selfAttentionKeys('sdxl', auto, 1024).get(64 * 64)!], [64 * 64]);
  assert.deepEqual([...selfAttentionKeys('sdxl', auto, 2048).get(128 * 128)!], [64 * 64]);
  assert.deepEqual([...selfAttentionKeys('sd15', auto, 1024).get(128 * 128)!], [64 * 64]);
});

test('random-model --arch sdxl-tiny: an SDXL folder that loads as SDXL; generate --todo 1.5 through the CLI', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'todo-sd-xl-'));
  try {
    const model = join(dir, 'm');
    const made = runCli(dir, 'random-model', '--arch', 'sdxl-tiny', '--out', model);
    assert.equal(made.code, 0, made.stderr);
    const index = JSON.parse(readFileSync(join(model, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(index._class_name, 'StableDiffusionXLPipeline');
    const pipe = await StableDiffusion.load(model);
    assert.equal(pipe.family, 'sdxl');
    assert.equal(pipe.vae.config.scalingFactor, 0.13025);
    assert.equal(pipe.tokenizer.padId, 49407);
    assert.equal(pipe.sdxl!.tokenizers[1].padId, 0);
    await pipe.dispose();
    const out = join(dir, 'fox.png');
    const r = runCli(dir, 'generate', '--model', model, '--prompt', 'a fox!', '--steps', '2', '--seed', '1', '--todo', '1.5', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const png = decode(readFileSync(out));
    assert.deepEqual([png.width, png.height], [32, 32], 'native size: sample_size 16 × VAE scale 2');
    assert.match(readPngText(readFileSync(out)).parameters!, /Sampler: Euler, .*ToDo factor: 1\.5, ToDo max depth: 2, ToDo disable after: 1\.0, ToDo mode: nearest/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a folder whose model_index.json names SDXL but whose U-Net is not: a clear error naming both', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'todo-sd-mixed-'));
  try {
    const model = join(dir, 'm');
    writeRandomModel(model, 'tiny');
    const indexPath = join(model, 'model_index.json');
    writeFileSync(indexPath, JSON.stringify({ ...JSON.parse(readFileSync(indexPath, 'utf8')), _class_name: 'StableDiffusionXLPipeline' }));
    await assert.rejects(StableDiffusion.load(model), /names StableDiffusionXLPipeline but the U-Net is not an SDXL one \(addition_embed_type "text_time"\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
