import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, loadUNet, SafetensorsFile, StableDiffusion, writeSafetensors } from '../src/index.js';
import { encodeF16 } from '../src/io/safetensors.js';
import { writeRandomModel } from '../src/models/random-model.js';
import { diffusersUNetKey, originalUNetKey, unetLayersPerBlock } from '../src/models/single-file/ldm-unet.js';
import { toOriginalLayout, type DiffusersComponent } from '../src/models/single-file/original-layout.js';
import { fixture, readTensor, relL2, runCli } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-single-writer-'));

function folderComponent(folder: string, name: string): DiffusersComponent {
  const dir = join(folder, name);
  const f = SafetensorsFile.open(join(dir, readdirSync(dir).find((x) => x.endsWith('.safetensors'))!));
  const tensors = new Map([...f.tensors.values()].map((t) => [t.name, { shape: t.shape, data: f.readFloat32(t.name) }]));
  return { config: JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>, tensors };
}

for (const [name, family, folder] of [
  ['sd1-tiny', 'sd1', ['single-file', 'sd1-tiny']],
  ['sd2-tiny', 'sd2', ['single-file', 'sd2-tiny']],
  ['sdxl-tiny', 'sdxl', ['sdxl-tiny']],
] as const) {
  test(`writing the original layout: the ${name} folder becomes the tensors of ${name}.safetensors`, () => {
    const dir = fixture(...folder);
    const parts = {
      unet: folderComponent(dir, 'unet'),
      vae: folderComponent(dir, 'vae'),
      textEncoder: folderComponent(dir, 'text_encoder'),
      ...(family === 'sdxl' ? { textEncoder2: folderComponent(dir, 'text_encoder_2') } : {}),
    };
    const written = toOriginalLayout(family, parts);
    const file = SafetensorsFile.open(fixture('single-file', `${name}.safetensors`));
    // The fixtures' extras (see models.json): SD 2.x's unused last OpenCLIP layer, its text_projection, logit_scale.
    const extra = /^(cond_stage_model\.model\.(transformer\.resblocks\.23\.|text_projection|logit_scale)|conditioner\.embedders\.1\.model\.logit_scale)/;
    const expected = [...file.tensors.keys()].filter((k) => !extra.test(k)).sort();
    assert.deepEqual([...written.keys()].filter((k) => !extra.test(k)).sort(), expected);
    for (const key of expected) {
      const t = written.get(key)!;
      assert.deepEqual(t.shape, file.info(key).shape, key);
      // sd1's file is the fp32 folder rounded to fp16: compare at the file's precision.
      const bits = file.info(key).dtype === 'F16' ? new Uint8Array(encodeF16(t.data).buffer) : new Uint8Array(t.data.buffer);
      assert.ok(Buffer.from(bits).equals(file.readBytes(key)), `${key} differs`);
    }
    if (family === 'sd2') assert.ok(written.has('cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight'), 'the unused 24th OpenCLIP layer is written');
  });
}

test('original U-Net names: diffusers → original → diffusers is the identity on every fixture checkpoint', () => {
  for (const name of ['sd1-tiny', 'sd2-tiny', 'sdxl-tiny']) {
    const file = SafetensorsFile.open(fixture('single-file', `${name}.safetensors`));
    const prefix = 'model.diffusion_model.';
    const tensors = new Map([...file.tensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
    const { levels, layersPerBlock } = unetLayersPerBlock(tensors);
    const upAttention = Array.from({ length: levels }, (_, i) => tensors.has(`output_blocks.${i * (layersPerBlock + 1)}.1.proj_in.weight`));
    for (const key of tensors.keys()) {
      const diffusers = diffusersUNetKey(key, layersPerBlock);
      assert.ok(diffusers, `${name}: ${key} has no diffusers name`);
      assert.equal(originalUNetKey(diffusers, layersPerBlock, upAttention), key);
    }
  }
});

test('random-model --format single-file: the same weights as the folder of the same seed, with a .yaml; one pipeline image', async () => {
  const file = join(root, 'tiny.safetensors');
  const r = runCli(root, 'random-model', '--arch', 'tiny-sd2', '--format', 'single-file', '--seed', '7', '--out', file);
  assert.equal(r.code, 0, r.stderr);
  // 16 channels per head and v-prediction: only the .yaml says so.
  assert.match(readFileSync(join(root, 'tiny.yaml'), 'utf8'), /parameterization: v[^]*num_head_channels: 16[^]*layer: penultimate/);
  const folder = join(root, 'tiny-folder');
  writeRandomModel(folder, 'tiny-sd2', { seed: 7 });
  const a = await StableDiffusion.load(file);
  const b = await StableDiffusion.load(folder);
  const opts = { prompt: 'a red house', width: 32, height: 32, steps: 2, seed: 5 };
  const [x, y] = [await a.generate(opts), await b.generate(opts)];
  assert.deepEqual(x.images[0]!.data, y.images[0]!.data);
  await a.dispose();
  await b.dispose();

  const again = runCli(root, 'random-model', '--arch', 'tiny-sd2', '--format', 'single-file', '--out', file);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists/);
  const bad = runCli(root, 'random-model', '--arch', 'tiny-sd2', '--format', 'single-file', '--out', join(root, 'tiny.ckpt'));
  assert.match(bad.stderr, /written as FILE\.safetensors/);
  const groups = runCli(root, 'random-model', '--arch', 'tiny', '--format', 'single-file', '--out', join(root, 'tiny8.safetensors'));
  assert.match(groups.stderr, /--format single-file writes the LDM layout of tiny-sd2, sd15, sd21; got --arch tiny/);
});

test('LoRAs apply to a single-file U-Net as to its folder (the lora fixture on tiny-photo as a checkpoint)', async () => {
  const folder = BUILTIN_MODEL_DIR;
  const parts = { unet: folderComponent(folder, 'unet'), vae: folderComponent(folder, 'vae'), textEncoder: folderComponent(folder, 'text_encoder') };
  const file = join(root, 'tiny-photo-unet.safetensors');
  const tensors = [...toOriginalLayout('sd1', parts)].filter(([k]) => k.startsWith('model.diffusion_model.'));
  writeSafetensors(file, Object.fromEntries(tensors.map(([k, t]) => [k, { dtype: 'F32', shape: t.shape, data: t.data }])));
  // tiny-photo's U-Net has 4 heads, not SD 1.x's 8: its .yaml says so.
  writeFileSync(join(root, 'tiny-photo-unet.yaml'), 'model:\n  params:\n    unet_config:\n      params:\n        num_heads: 4\n');
  const io = fixture('lora', 'io.safetensors');
  const unet = await loadUNet(file, { loras: [{ path: fixture('lora', 'lora-kohya.safetensors'), scale: 0.8 }] });
  const out = await unet.forward(readTensor(io, 'unet_sample'), readTensor(io, 'unet_timestep').data[0]!, readTensor(io, 'unet_encoder_hidden_states'));
  assert.ok(relL2(out.data, readTensor(io, 'unet_out_lora').data) <= 1e-4, `relative L2 error ${relL2(out.data, readTensor(io, 'unet_out_lora').data)}`);
  await unet.dispose();
});
