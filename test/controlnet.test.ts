/**
 * ControlNetModel: identities that pin it to diffusers without a PyTorch fixture. A ControlNet made
 * from a U-Net's own down weights (ControlNetModel.from_unet) gives the U-Net's skip connections
 * through its 1x1 convs (checked against a graph of the U-Net's down path over the diffusers
 * fixture `unet-tiny`, the convs recomputed here); zeroed convs leave the U-Net unchanged
 * exactly; scales are linear, guess mode is logspace(−1, 0); single files equal their folders.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { denseAttention } from '../src/attention/dense.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { serializeModel } from '../src/graph/serialize.js';
import { WeightRecorder, WeightStore } from '../src/graph/weights.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { conv2d } from '../src/models/layers.js';
import { buildControlNetGraph, ControlNet, conditioningScales, downResidualCount, parseControlNetConfig, residualShapes } from '../src/models/controlnet.js';
import { resolveAttention, type AttentionOptions } from '../src/attention/options.js';
import { attentionLevels, downBlocks, midBlock, parseUNetConfig, timeEmbedding, transformerAt, UNet } from '../src/models/unet.js';
import { openSession } from '../src/runtime/session.js';
import type { Tensor } from '../src/tensor.js';
import { controlNetModels, editControlNet } from './controlnet-models.js';
import { fixture, relL2 } from './helpers.js';
import { tensorsOf, writeTorchFile } from './torch-writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'todo-sd-cn-model-'));

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 31 - 1;
  });
}

const tensor = (dims: number[], seed: number, offset = 0): Tensor => ({ data: values(dims.reduce((a, b) => a * b, 1), seed).map((v) => v + offset), dims });

/** 1x1 conv of [B, C, H, W] with weight [C, C, 1, 1] and bias, in float64. */
function conv1x1(x: Tensor, w: Float32Array, b: Float32Array): Float64Array {
  const [n, c, h, wd] = x.dims as [number, number, number, number];
  const hw = h * wd;
  const out = new Float64Array(n * c * hw);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < c; o++) {
      for (let p = 0; p < hw; p++) {
        let s = b[o]!;
        for (let k = 0; k < c; k++) s += w[o * c + k]! * x.data[(i * c + k) * hw + p]!;
        out[(i * c + o) * hw + p] = s;
      }
    }
  }
  return out;
}

test('a ControlNet made from a U-Net (from_unet) gives the U-Net skip connections through its 1x1 convs, times the scale', async () => {
  const unetDir = fixture('unet-tiny', 'unet');
  const unetConfig = JSON.parse(readFileSync(join(unetDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const ucfg = parseUNetConfig(unetConfig);
  const unetWeights = SafetensorsFile.open(join(unetDir, 'diffusion_pytorch_model.safetensors'));
  // diffusers' from_unet: the U-Net's config and its encoder's weights; a conditioning embedding whose conv_out is zero.
  const config = Object.fromEntries(Object.entries({ ...unetConfig, _class_name: 'ControlNetModel', conditioning_embedding_out_channels: [4, 8] }).filter(([k]) => k !== 'up_block_types' && k !== 'out_channels'));
  const cfg = parseControlNetConfig(config);
  const tensors: Record<string, TensorToWrite> = {};
  for (const name of unetWeights.tensors.keys()) {
    if (/^(conv_in|time_embedding|down_blocks|mid_block)\./.test(name)) tensors[name] = { dtype: 'F32', shape: unetWeights.info(name).shape, data: unetWeights.readFloat32(name) };
  }
  const add = (name: string, shape: number[], seed: number, zero = false): void => {
    tensors[name] = { dtype: 'F32', shape, data: zero ? new Float32Array(shape.reduce((a, b) => a * b, 1)) : values(shape.reduce((a, b) => a * b, 1), seed).map((v) => v * 0.3) };
  };
  add('controlnet_cond_embedding.conv_in.weight', [4, 3, 3, 3], 1);
  add('controlnet_cond_embedding.conv_in.bias', [4], 2);
  add('controlnet_cond_embedding.blocks.0.weight', [4, 4, 3, 3], 3);
  add('controlnet_cond_embedding.blocks.0.bias', [4], 4);
  add('controlnet_cond_embedding.blocks.1.weight', [8, 4, 3, 3], 5);
  add('controlnet_cond_embedding.blocks.1.bias', [8], 6);
  add('controlnet_cond_embedding.conv_out.weight', [32, 8, 3, 3], 0, true);
  add('controlnet_cond_embedding.conv_out.bias', [32], 0, true);
  const shapes = residualShapes(cfg, 2, 16, 16);
  shapes.forEach((s, i) => {
    const name = i < shapes.length - 1 ? `controlnet_down_blocks.${i}` : 'controlnet_mid_block';
    add(`${name}.weight`, [s[1]!, s[1]!, 1, 1], 100 + i);
    add(`${name}.bias`, [s[1]!], 200 + i);
  });
  const dir = join(tmp, 'from-unet');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeSafetensors(join(dir, 'diffusion_pytorch_model.safetensors'), tensors, { format: 'pt' });

  // The U-Net's skip connections, from its own down path over the fixture's weights.
  const weights = WeightStore.open([join(unetDir, 'diffusion_pytorch_model.safetensors')], 'unet');
  const g = new GraphBuilder('skips', weights);
  const sampleIn = g.input('sample', [2, 4, 16, 16]);
  const temb = timeEmbedding(g, ucfg, 2);
  const text = g.input('encoder_hidden_states', [2, 77, 32]);
  const tx = transformerAt(g, ucfg, text, denseAttention, [16, 16], attentionLevels(ucfg));
  const skips = downBlocks(g, ucfg, conv2d(g, 'conv_in', sampleIn, 32, 3, { pad: 1 }), temb, tx);
  [...skips, midBlock(g, ucfg, skips[skips.length - 1]!, temb, tx)].forEach((v, i) => g.output(v, `s${i}`));
  const { session } = await openSession(serializeModel(g.build()), weights.folder, {});
  const sample = tensor([2, 4, 16, 16], 7);
  const hidden = tensor([2, 77, 32], 8);
  const feeds = { sample, timestep: { data: Float32Array.of(801, 801), dims: [2] }, encoder_hidden_states: hidden };
  const { ort } = await import('../src/runtime/session.js');
  const ref = await session.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('float32', v.data, v.dims)])));
  await session.release();

  const cn = await ControlNet.load(dir);
  const out = await cn.forward(sample, 801, hidden, tensor([2, 3, 32, 32], 9, 1), { conditioningScale: 0.7 });
  assert.equal(out.down.length, downResidualCount(cfg));
  [...out.down, out.mid].forEach((r, i) => {
    const skip = ref[`s${i}`]!;
    const name = i < out.down.length ? `controlnet_down_blocks.${i}` : 'controlnet_mid_block';
    const want = conv1x1({ data: skip.data as Float32Array, dims: [...skip.dims] }, tensors[`${name}.weight`]!.data as Float32Array, tensors[`${name}.bias`]!.data as Float32Array).map((v) => 0.7 * v);
    assert.deepEqual(r.dims, [...skip.dims]);
    const err = relL2(r.data, want);
    assert.ok(err < 1e-5, `residual ${i}: relative L2 ${err}`);
  });
  await cn.dispose();
});

test('zeroed controlnet_down_blocks / mid block: residuals are zero and the U-Net output is unchanged, bit for bit', async () => {
  const m = controlNetModels();
  const zeroed = editControlNet(m.cn, join(tmp, 'zeroed'), (name, data) => (/^controlnet_(down_blocks|mid_block)/.test(name) ? new Float32Array(data.length) : undefined));
  const cn = await ControlNet.load(zeroed);
  const unet = await UNet.load(m.tiny);
  const sample = tensor([2, 4, 8, 8], 1);
  const text = tensor([2, 5, 32], 2);
  const r = await cn.forward(sample, 500, text, tensor([2, 3, 16, 16], 3, 1));
  for (const t of [...r.down, r.mid]) assert.ok(t.data.every((v) => v === 0));
  const plain = await unet.forward(sample, 500, text);
  const withResiduals = await unet.forward(sample, 500, text, { controlResiduals: r });
  assert.deepEqual(withResiduals.data, plain.data);
  // A non-zero ControlNet changes it.
  const real = await (await ControlNet.load(m.cn)).forward(sample, 500, text, tensor([2, 3, 16, 16], 3, 1));
  const changed = await unet.forward(sample, 500, text, { controlResiduals: real });
  assert.ok(relL2(changed.data, plain.data) > 1e-3);
  await Promise.all([cn.dispose(), unet.dispose()]);
});

test('conditioning scale is linear; guess mode scales residual i by logspace(−1, 0, n)[i]', async () => {
  const m = controlNetModels();
  const cn = await ControlNet.load(m.cn);
  const args = [tensor([1, 4, 8, 8], 4), 300, tensor([1, 3, 32], 5), tensor([1, 3, 16, 16], 6, 1)] as const;
  const one = await cn.forward(...args);
  const quarter = await cn.forward(...args, { conditioningScale: 0.25 });
  const guess = await cn.forward(...args, { conditioningScale: 0.5, guessMode: true });
  const all = (r: typeof one): Tensor[] => [...r.down, r.mid];
  const n = all(one).length;
  assert.equal(n, downResidualCount(cn.config) + 1);
  all(one).forEach((t, i) => {
    assert.ok(relL2(all(quarter)[i]!.data, t.data.map((v) => 0.25 * v)) < 1e-6);
    // torch.logspace(-1, 0, n) · 0.5, written out.
    const s = 10 ** (-1 + i / (n - 1)) * 0.5;
    assert.ok(relL2(all(guess)[i]!.data, t.data.map((v) => s * v)) < 1e-6, `guess mode residual ${i}`);
  });
  assert.deepEqual(conditioningScales(cn.config, 2, false), Array(n).fill(2));
  // Explicit per-residual scales, and a wrong count refused.
  const perResidual = await cn.forward(...args, { conditioningScale: Array.from({ length: n }, (_, i) => i) });
  assert.ok(all(perResidual)[0]!.data.every((v) => v === 0));
  await assert.rejects(cn.forward(...args, { conditioningScale: [1, 2] }), /conditioningScale must be a number or \d+ finite numbers/);
  await assert.rejects(cn.forward(args[0], 300, args[2], tensor([1, 3, 8, 8], 6)), /controlnet_cond must have shape \[1, 3, 16, 16\]/);
  await cn.dispose();
});

test('global_pool_conditions averages each residual over the image; bgr flips the control image', async () => {
  const m = controlNetModels();
  const config = JSON.parse(readFileSync(join(m.cn, 'config.json'), 'utf8')) as Record<string, unknown>;
  const variant = (name: string, extra: Record<string, unknown>): string => {
    const dir = join(tmp, name);
    mkdirSync(dir);
    cpSync(join(m.cn, 'diffusion_pytorch_model.safetensors'), join(dir, 'diffusion_pytorch_model.safetensors'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, ...extra }));
    return dir;
  };
  const rgb = await ControlNet.load(m.cn);
  const pooled = await ControlNet.load(variant('pooled', { global_pool_conditions: true }));
  const bgr = await ControlNet.load(variant('bgr', { controlnet_conditioning_channel_order: 'bgr' }));
  const cond = tensor([1, 3, 16, 16], 6, 1);
  const flipped = { data: new Float32Array(cond.data.length), dims: cond.dims };
  for (let c = 0; c < 3; c++) flipped.data.set(cond.data.subarray(c * 256, (c + 1) * 256), (2 - c) * 256);
  const args = [tensor([1, 4, 8, 8], 4), 300, tensor([1, 3, 32], 5)] as const;
  const plain = await rgb.forward(...args, cond);
  // global_pool_conditions implies guess mode (diffusers), so compare with guess-mode scales.
  const plainGuess = await rgb.forward(...args, cond, { guessMode: true });
  const pool = await pooled.forward(...args, cond);
  [...plainGuess.down, plainGuess.mid].forEach((t, i) => {
    const p = [...pool.down, pool.mid][i]!;
    const [, c, h, w] = t.dims as number[];
    for (let ch = 0; ch < c!; ch++) {
      const plane = t.data.subarray(ch * h! * w!, (ch + 1) * h! * w!);
      const mean = plane.reduce((a, v) => a + v, 0) / plane.length;
      for (let k = 0; k < plane.length; k++) assert.ok(Math.abs(p.data[ch * h! * w! + k]! - mean) < 1e-5 * (1 + Math.abs(mean)));
    }
  });
  const flippedOut = await bgr.forward(...args, flipped);
  assert.deepEqual(flippedOut.mid.data, plain.mid.data);
  await Promise.all([rgb.dispose(), pooled.dispose(), bgr.dispose()]);
});

test("single files equal their diffusers folders: A1111's control_model.* layout (with or without the prefix) and SDXL's diffusers names", async () => {
  const m = controlNetModels();
  const run = async (cn: ControlNet, xl: boolean): Promise<Float32Array[]> => {
    const b = 2;
    const extra = xl ? { textEmbeds: tensor([b, 12], 11), timeIds: { data: Float32Array.of(16, 16, 0, 0, 16, 16, 16, 16, 0, 0, 16, 16), dims: [b, 6] } } : {};
    const r = await cn.forward(tensor([b, 4, 8, 8], 1), 700, tensor([b, 4, cn.config.crossAttentionDim], 2), tensor([b, 3, 16, 16], 3, 1), extra);
    await cn.dispose();
    return [...r.down, r.mid].map((t) => t.data);
  };
  const folder = await run(await ControlNet.load(m.cn), false);
  assert.deepEqual(await run(await ControlNet.load(m.cnFile), false), folder);
  // The same keys without `control_model.`.
  const f = SafetensorsFile.open(m.cnFile);
  const bare: Record<string, TensorToWrite> = {};
  for (const name of f.tensors.keys()) bare[name.replace(/^control_model\./, '')] = { dtype: 'F32', shape: f.info(name).shape, data: f.readFloat32(name) };
  const bareFile = join(tmp, 'bare.safetensors');
  writeSafetensors(bareFile, bare);
  cpSync(m.cnFile.replace(/\.safetensors$/, '.yaml'), bareFile.replace(/\.safetensors$/, '.yaml'));
  assert.deepEqual(await run(await ControlNet.load(bareFile), false), folder);
  // A1111's control_v11*.pth: the same tensors in a PyTorch zip (its .yaml beside it), read without running the pickle.
  const pth = join(tmp, 'control_tiny.pth');
  writeTorchFile(pth, tensorsOf(f), { format: 'zip' });
  cpSync(m.cnFile.replace(/\.safetensors$/, '.yaml'), pth.replace(/\.pth$/, '.yaml'));
  const fromPth = await ControlNet.load(pth);
  assert.equal(fromPth.name, 'control_tiny');
  assert.deepEqual(await run(fromPth, false), folder);
  // Without its .yaml, the heads come from the U-Net it runs with; the family rule (64 channels per head) does not fit a tiny model.
  const noYaml = join(tmp, 'noyaml.safetensors');
  cpSync(m.cnFile, noYaml);
  await assert.rejects(ControlNet.load(noYaml), /noyaml\.safetensors: 32 channels at level 0 do not split into heads of 64 channels/);
  const tinyUNet = parseUNetConfig(JSON.parse(readFileSync(join(m.tiny, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>);
  assert.deepEqual(await run(await ControlNet.load(noYaml, { base: tinyUNet }), false), folder);

  const xlUNet = parseUNetConfig(JSON.parse(readFileSync(join(m.sdxl, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>);
  const xlFolder = await run(await ControlNet.load(m.cnXl), true);
  assert.deepEqual(await run(await ControlNet.load(m.cnXlFile, { base: xlUNet }), true), xlFolder);
  await assert.rejects(ControlNet.load(m.cnXlFile), /add_embedding takes 60 inputs, which do not split into SDXL's pooled text \(1280\) and 6 time ids; load it with the U-Net it belongs to/);
  const xl = await ControlNet.load(m.cnXl);
  await assert.rejects(xl.forward(tensor([1, 4, 8, 8], 1), 1, tensor([1, 2, 24], 2), tensor([1, 3, 16, 16], 3)), /SDXL ControlNet \(text_time\): pass textEmbeds \[1, 12\] and timeIds \[1, 6\]/);
});

test('files that are not ControlNets are refused by what they are', async () => {
  const write = (name: string, keys: string[]): string => {
    const path = join(tmp, name);
    writeSafetensors(path, Object.fromEntries(keys.map((k) => [k, { dtype: 'F32', shape: [1], data: Float32Array.of(0) }])));
    return path;
  };
  await assert.rejects(ControlNet.load(write('diff.safetensors', ['difference', 'control_model.input_hint_block.0.weight'])), /is a "difference" ControlNet/);
  await assert.rejects(ControlNet.load(write('lora.safetensors', ['lora_controlnet', 'x'])), /is a Control-LoRA/);
  await assert.rejects(ControlNet.load(write('t2i.safetensors', ['body.0.block1.weight'])), /is a T2I-Adapter/);
  await assert.rejects(ControlNet.load(write('sd.safetensors', ['model.diffusion_model.input_blocks.0.0.weight'])), /is a Stable Diffusion checkpoint, not a ControlNet; pass it with --model/);
  await assert.rejects(ControlNet.load(write('other.safetensors', ['foo.bar.weight'])), /match no ControlNet layout todo-sd knows \(found foo\.bar\.\* \(1\)\)/);
  writeFileSync(join(tmp, 'control_sd15_canny.pth'), Uint8Array.of(0x80, 2, 0x7d, 0x71));
  await assert.rejects(ControlNet.load(join(tmp, 'control_sd15_canny.pth')), /control_sd15_canny\.pth: cannot be loaded: .*truncated or corrupt/);
  await assert.rejects(ControlNet.load(controlNetModels().tiny), /no controlnet component/);
});

test("ToDo acts in the ControlNet's self-attention at the U-Net's levels, with the U-Net's schedule", async () => {
  const m = controlNetModels();
  const cfg = parseControlNetConfig(JSON.parse(readFileSync(join(m.cn, 'config.json'), 'utf8')) as Record<string, unknown>);
  const shape = { batch: 1, height: 16, width: 16, textLength: 3 };
  const calls = (attention: AttentionOptions): Map<string, number> =>
    new Map(buildControlNetGraph(cfg, new WeightRecorder(), shape, resolveAttention(attention).variant({ latent: [16, 16] })).attentionCalls.map((a) => [a.scope, a.keys]));
  const dense = calls({ method: 'dense' });
  const todo = calls({ method: 'todo', factor: 2, level2Factor: 2 });
  assert.deepEqual([...dense.keys()].sort(), [...todo.keys()].sort());
  for (const [scope, keys] of dense) {
    // Level 0 (down_blocks.0, 16x16 tokens) and level 1 (the mid block, 8x8) are the tiny U-Net's attention levels.
    const want = scope.endsWith('attn1') ? (scope.startsWith('down_blocks.0') ? 64 : 16) : keys;
    assert.equal(todo.get(scope), want, scope);
  }
  // stopAt switches back to dense attention on the later steps: the same graph, dense when inactive.
  const cn = await ControlNet.load(m.cn, { attention: { method: 'todo', factor: 2, stopAt: 0.5 } });
  const args = [tensor([1, 4, 16, 16], 1), 500, tensor([1, 3, 32], 2), tensor([1, 3, 32, 32], 3, 1)] as const;
  const inactive = await cn.forward(...args, { attentionActive: false });
  const active = await cn.forward(...args);
  cn.setAttention({ method: 'dense' });
  const plain = await cn.forward(...args);
  assert.ok(relL2(inactive.mid.data, plain.mid.data) < 1e-6);
  assert.ok(relL2(active.mid.data, plain.mid.data) > 1e-4);
  await cn.dispose();
});
