import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, buildUNetGraph, loadTextEncoder, loadUNet, loadVAE, parseUNetConfig, parseVAEConfig, writeRandomModel } from '../src/index.js';
import { buildDecoderGraph } from '../src/models/vae.js';
import { denseAttention } from '../src/attention/dense.js';
import type { GraphDef } from '../src/graph/builder.js';
import { defaultPrecision } from '../src/graph/precision.js';
import { WeightStore } from '../src/graph/weights.js';
import { findComponent } from '../src/io/model-folder.js';
import { relL2 } from './helpers.js';

const photo = BUILTIN_MODEL_DIR;
const sample = { data: Float32Array.from({ length: 2 * 4 * 16 * 16 }, (_, i) => Math.sin(i)), dims: [2, 4, 16, 16] };
const text = { data: Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => Math.cos(i) * 0.5), dims: [2, 77, 32] };

/** Casts whose input is a weight (an initializer read from the model's files). */
function weightCasts(g: GraphDef): number {
  const external = new Set(g.initializers.filter((i) => i.external).map((i) => i.name));
  return g.nodes.filter((n) => n.op === 'Cast' && external.has(n.inputs[0]!)).length;
}

function unetGraph(dir: string, precision: 'fp32' | 'fp16'): GraphDef {
  const comp = findComponent(dir, 'unet', { classNames: ['UNet2DConditionModel'] });
  const weights = WeightStore.open(comp.weightFiles, 'unet');
  return buildUNetGraph(parseUNetConfig(comp.config), weights, { batch: 1, height: 8, width: 8, textLength: 77 }, denseAttention, { precision }).build();
}

test('default precision: fp16 on a GPU provider, fp32 on the CPU', () => {
  assert.equal(defaultPrecision('cpu'), 'fp32');
  assert.equal(defaultPrecision('webgpu'), 'fp16');
  assert.equal(defaultPrecision('cuda'), 'fp16');
});

test('weights stored in the compute type feed the graph directly; others are cast once', () => {
  const random = join(mkdtempSync(join(tmpdir(), 'todo-sd-prec-')), 'tiny');
  writeRandomModel(random, 'tiny', { seed: 2 });
  // tiny-photo's U-Net is stored fp16, the random one fp32.
  assert.equal(weightCasts(unetGraph(photo, 'fp16')), 0);
  assert.ok(weightCasts(unetGraph(photo, 'fp32')) > 10);
  assert.equal(weightCasts(unetGraph(random, 'fp32')), 0);
  assert.ok(weightCasts(unetGraph(random, 'fp16')) > 10);
  const g = unetGraph(photo, 'fp16');
  assert.deepEqual(
    g.inputs.map((i) => i.type),
    ['float32', 'float32', 'float32'],
    'inputs and outputs stay fp32 at the graph boundary',
  );
  assert.equal(g.outputs[0]!.type, 'float32');
  // Timestep embedding and norm statistics in fp32: the Sin/Cos and every InstanceNormalization read fp32.
  const types = new Map<string, string>([...g.initializers.map((i) => [i.name, i.type] as [string, string]), ...g.inputs.map((i) => [i.name, i.type] as [string, string])]);
  for (const n of g.nodes) if (n.op === 'Cast') types.set(n.outputs[0]!, n.attrs.to && 'i' in n.attrs.to && n.attrs.to.i === 1 ? 'float32' : 'other');
  const norms = g.nodes.filter((n) => n.op === 'InstanceNormalization');
  assert.ok(norms.length > 0 && norms.every((n) => types.get(n.inputs[0]!) === 'float32' && types.get(n.inputs[1]!) === 'float32'));
});

test('the VAE stays fp32 under force_upcast (diffusers default), and follows the precision without it', async () => {
  const comp = findComponent(photo, 'vae', { classNames: ['AutoencoderKL'] });
  const weights = WeightStore.open(comp.weightFiles, 'vae');
  const cfg = parseVAEConfig(comp.config);
  assert.equal(cfg.forceUpcast, true);
  const fp16Values = (g: GraphDef): number => g.initializers.filter((i) => i.type === 'float16' && !i.external).length + g.nodes.filter((n) => n.op === 'Cast' && n.attrs.to && 'i' in n.attrs.to && n.attrs.to.i === 10).length;
  assert.ok(fp16Values(buildDecoderGraph({ ...cfg, forceUpcast: false }, weights, { batch: 1, height: 4, width: 4 }, { precision: 'fp16' }).build()) > 0);
  assert.equal(parseVAEConfig({ ...comp.config, force_upcast: false }).forceUpcast, false);
  // tiny-photo's VAE says force_upcast: asking for fp16 decodes exactly as fp32.
  const z = { data: Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => Math.sin(i * 0.3)), dims: [1, 4, 8, 8] };
  const a = await (await loadVAE(photo)).decode(z);
  const b = await (await loadVAE(photo, { precision: 'fp16' })).decode(z);
  assert.equal(relL2(b.data, a.data), 0);
});

test('fp16 graphs on the CPU provider match fp32 to about 1e-3 (rounding), U-Net and text encoder', async () => {
  for (const attention of [{ method: 'dense' as const }, { method: 'todo' as const, factor: 2 }]) {
    const a = await loadUNet(photo, { attention });
    const b = await loadUNet(photo, { attention, precision: 'fp16' });
    const ya = await a.forward(sample, 500, text);
    const yb = await b.forward(sample, 500, text);
    const err = relL2(yb.data, ya.data);
    assert.ok(err > 1e-6 && err < 2e-3, `U-Net ${attention.method}: fp16 vs fp32 relative L2 ${err}`);
    await a.dispose();
    await b.dispose();
  }
  const ids = { data: Int32Array.from({ length: 77 }, (_, i) => (i < 5 ? 49406 + (i === 0 ? 0 : -49000 + i) : 49407)), dims: [1, 77] };
  const ea = await (await loadTextEncoder(photo)).forward(ids);
  const eb = await (await loadTextEncoder(photo, { precision: 'fp16' })).forward(ids);
  const err = relL2(eb.data, ea.data);
  assert.ok(err > 1e-6 && err < 2e-3, `text encoder fp16 vs fp32 relative L2 ${err}`);
});
