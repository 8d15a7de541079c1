import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAttention } from '../src/attention/options.js';
import { WeightRecorder } from '../src/graph/weights.js';
import { ARCHITECTURE_CONFIGS } from '../src/models/architectures.js';
import { attentionLevels, buildUNetGraph, parseUNetConfig } from '../src/models/unet.js';
import { StableDiffusion, writeRandomModel, type AttentionOptions } from '../src/index.js';

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

test('random-model --arch sdxl-tiny: an SDXL folder that loads as SDXL and generates', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'todo-sd-xl-'));
  try {
    const model = join(dir, 'm');
    writeRandomModel(model, 'sdxl-tiny');
    const index = JSON.parse(readFileSync(join(model, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(index._class_name, 'StableDiffusionXLPipeline');
    const pipe = await StableDiffusion.load(model);
    assert.equal(pipe.family, 'sdxl');
    assert.equal(pipe.vae.config.scalingFactor, 0.13025);
    assert.equal(pipe.tokenizer.padId, 49407);
    assert.equal(pipe.sdxl!.tokenizers[1].padId, 0);
    const { images } = await pipe.generate({ prompt: 'a fox!', width: 32, height: 32, steps: 2, seed: 1, attention: { method: 'todo', factor: 2 } });
    assert.equal(images.length, 1);
    assert.equal(images[0]!.data.length, 32 * 32 * 3);
    await pipe.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
