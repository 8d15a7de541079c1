import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BUILTIN_MODEL_DIR, buildUNetGraph, loadUNet, parseUNetConfig, randn, type AttentionOptions, type Tensor, type UNet, type UNetConfig, type UNetForwardOptions } from '../src/index.js';
import { ARCHITECTURE_CONFIGS } from '../src/models/architectures.js';
import { WeightRecorder } from '../src/graph/weights.js';
import { denseAttention } from '../src/attention/dense.js';
import { cachePointOfLevel, type CachePoint } from '../src/models/unet-cache.js';
import { fixture, readTensor, relL2 } from './helpers.js';

function maxAbs(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.dims, b.dims);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}

/** Every cache point of a U-Net: blocks 0 … n−1, layers 0 … layers_per_block. */
function cachePoints(cfg: UNetConfig): CachePoint[] {
  return cfg.blockOutChannels.flatMap((_, block) => Array.from({ length: cfg.layersPerBlock + 1 }, (_, layer) => ({ block, layer })));
}

/**
 * The full graph (plain U-Net + the feature as an output) gives the plain U-Net's output, and the
 * shallow graph fed the full graph's feature of the same step gives the full output again.
 */
async function checkIdentities(unet: UNet, sample: Tensor, t: number, text: Tensor, added: UNetForwardOptions, points: CachePoint[], label: string): Promise<void> {
  const plain = await unet.forward(sample, t, text, added);
  for (const point of points) {
    const full = await unet.forwardCached(sample, t, text, { point }, added);
    assert.ok(maxAbs(full.sample, plain) <= 1e-6 * Math.max(...plain.data.map(Math.abs)), `${label} ${JSON.stringify(point)}: full graph = plain U-Net`);
    const shallow = await unet.forwardCached(sample, t, text, { point, feature: full.feature }, added);
    assert.equal(maxAbs(shallow.sample, full.sample), 0, `${label} ${JSON.stringify(point)}: shallow graph on the same step's feature = full output`);
    assert.equal(shallow.feature, full.feature);
    // A stale feature (another step's) changes the output: the shallow graph really uses it.
    const other = await unet.forwardCached(sample, t, text, { point, feature: { data: full.feature.data.map((v) => v * 0.5), dims: full.feature.dims } }, added);
    assert.ok(relL2(other.sample.data, full.sample.data) > 1e-3, `${label} ${JSON.stringify(point)}: the feature matters`);
  }
}

test('DeepCache graphs on tiny-photo: every cache point, dense, ToDo with its dense switch both ways, ToMe', async () => {
  const unet = await loadUNet(BUILTIN_MODEL_DIR);
  const sample = { data: randn(1, [2, 4, 16, 16]), dims: [2, 4, 16, 16] };
  const text = { data: randn(2, [2, 77, 32]), dims: [2, 77, 32] };
  // The plain and the full graph stay open side by side, as in a pass that alternates them.
  await unet.keepSessions(2);
  const cases: [string, AttentionOptions, boolean][] = [
    ['dense', { method: 'dense' }, true],
    ['todo 2, stopAt 0.5, on', { method: 'todo', factor: 2, stopAt: 0.5 }, true],
    ['todo 2, stopAt 0.5, off', { method: 'todo', factor: 2, stopAt: 0.5 }, false],
    ['tome 0.5', { method: 'tome', ratio: 0.5, random: false }, true],
  ];
  for (const [label, attention, attentionActive] of cases) {
    unet.setAttention(attention);
    const points = label === 'dense' ? cachePoints(unet.config) : [{ block: 0, layer: 0 }];
    await checkIdentities(unet, sample, 500, text, { attentionActive }, points, label);
  }
  await unet.dispose();
});

test('DeepCache graphs on sdxl-tiny (text_time, no attention at the top level)', async () => {
  const io = fixture('sdxl-tiny', 'io.safetensors');
  const unet = await loadUNet(fixture('sdxl-tiny'));
  const added = { textEmbeds: readTensor(io, 'text_embeds'), timeIds: readTensor(io, 'time_ids') };
  await checkIdentities(unet, readTensor(io, 'sample'), readTensor(io, 'timestep').data[0]!, readTensor(io, 'encoder_hidden_states'), added, [{ block: 0, layer: 0 }, { block: 1, layer: 1 }, { block: 2, layer: 0 }], 'sdxl-tiny');
  await unet.dispose();
});

test('a feature of the wrong shape and a cache point past the U-Net are refused, naming the valid range', async () => {
  const unet = await loadUNet(BUILTIN_MODEL_DIR);
  const sample = { data: randn(1, [1, 4, 8, 8]), dims: [1, 4, 8, 8] };
  const text = { data: randn(2, [1, 77, 32]), dims: [1, 77, 32] };
  await assert.rejects(unet.forwardCached(sample, 10, text, { point: { block: 2, layer: 0 } }), /DeepCache block 2 is not a block of this U-Net: use 0 … 1/);
  await assert.rejects(unet.forwardCached(sample, 10, text, { point: { block: 0, layer: 2 } }), /DeepCache layer 2 .*use 0 … 1/);
  const full = await unet.forwardCached(sample, 10, text, { point: { block: 0, layer: 0 } });
  await assert.rejects(unet.forwardCached(sample, 10, text, { point: { block: 1, layer: 0 }, feature: full.feature }), /DeepCache feature must have shape \[1, 128, 4, 4\]/);
  await unet.dispose();
});

/**
 * The authors' DeepCacheSDHelper (DeepCache/extension/deepcache.py, the released form of
 * sd_universal/deepcache.py), transcribed: the modules it wraps, with the (block, layer) ids it
 * gives them, and is_skip_step on a non-full step. A module runs when neither it nor its block's
 * wrapper is skipped.
 */
function helperRunsOnCachedStep(cfg: UNetConfig, p: CachePoint): Set<string> {
  const isSkip = (blockI: number, layerI: number, type: 'down' | 'mid' | 'up'): boolean => {
    if (blockI > p.block || type === 'mid') return true;
    if (blockI < p.block) return false;
    return type === 'down' ? layerI >= p.layer : layerI > p.layer;
  };
  const runs = new Set<string>();
  const n = cfg.blockOutChannels.length;
  cfg.downBlockTypes.forEach((type, i) => {
    if (isSkip(i, 0, 'down')) return;
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      if (!isSkip(i, j, 'down')) runs.add(`down_blocks.${i}.resnets.${j}`);
      if (type === 'CrossAttnDownBlock2D' && !isSkip(i, j, 'down')) runs.add(`down_blocks.${i}.attentions.${j}`);
    }
    if (i < n - 1 && !isSkip(i, cfg.layersPerBlock, 'down')) runs.add(`down_blocks.${i}.downsamplers.0`);
  });
  if (!isSkip(0, 0, 'mid')) runs.add('mid_block');
  const layerNum = cfg.layersPerBlock + 1;
  cfg.upBlockTypes.forEach((type, i) => {
    const blockI = n - i - 1;
    if (isSkip(blockI, 0, 'up')) return;
    for (let j = 0; j < layerNum; j++) {
      if (!isSkip(blockI, layerNum - j - 1, 'up')) runs.add(`up_blocks.${i}.resnets.${j}`);
      if (type === 'CrossAttnUpBlock2D' && !isSkip(blockI, layerNum - j - 1, 'up')) runs.add(`up_blocks.${i}.attentions.${j}`);
    }
    if (i < n - 1 && !isSkip(blockI, 0, 'up')) runs.add(`up_blocks.${i}.upsamplers.0`);
  });
  return runs;
}

/** The block modules whose weights a graph uses. */
function graphModules(cfg: UNetConfig, point: CachePoint, graph: 'full' | 'shallow'): Set<string> {
  const rec = new WeightRecorder();
  const probe = 2 ** (cfg.blockOutChannels.length - 1);
  buildUNetGraph(cfg, rec, { batch: 1, height: probe, width: probe, textLength: 1 }, denseAttention, {}, { point, graph });
  const modules = [...rec.shapes.keys()].map((k) => /^((?:down|up)_blocks\.\d+\.(?:resnets|attentions|downsamplers|upsamplers)\.\d+|mid_block)\./.exec(k)?.[1]).filter((m) => m !== undefined);
  return new Set(modules);
}

test("the shallow graph runs exactly the modules the authors' helper runs on a cached step (SD 1.5, SD 2.1, SDXL configs)", () => {
  for (const arch of ['sd15', 'sd21', 'sdxl'] as const) {
    const cfg = parseUNetConfig(ARCHITECTURE_CONFIGS[arch].unet);
    const all = graphModules(cfg, { block: 0, layer: 0 }, 'full');
    for (const point of cachePoints(cfg)) {
      const want = [...helperRunsOnCachedStep(cfg, point)].sort();
      assert.deepEqual([...graphModules(cfg, point, 'shallow')].sort(), want, `${arch} ${JSON.stringify(point)}`);
      assert.ok(want.length < all.size, `${arch} ${JSON.stringify(point)}: some modules are cached`);
      assert.deepEqual([...graphModules(cfg, point, 'full')].sort(), [...all].sort(), `${arch}: the full graph is the whole U-Net`);
    }
  }
});

test("A1111's DeepCache resnet level numbers the cache points block by block (the helper's cache_branch_id for SD's 2 layers per block)", () => {
  const sd15 = parseUNetConfig(ARCHITECTURE_CONFIGS.sd15.unet);
  // cache_branch_id: layer = id % 3, block = id // 3.
  for (let level = 0; level < 12; level++) assert.deepEqual(cachePointOfLevel(sd15, level), { block: Math.floor(level / 3), layer: level % 3 });
  assert.throws(() => cachePointOfLevel(sd15, 12), /resnet level 12 .*use 0 … 11/);
  const xl = parseUNetConfig(ARCHITECTURE_CONFIGS.sdxl.unet);
  assert.deepEqual(cachePointOfLevel(xl, 8), { block: 2, layer: 2 });
  assert.throws(() => cachePointOfLevel(xl, 9), /use 0 … 8/);
});
