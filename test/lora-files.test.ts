import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, loadTextEncoder, loadUNet, SafetensorsFile, StableDiffusion, writeSafetensors } from '../src/index.js';
import type { TensorToWrite } from '../src/index.js';
import { LoraFile } from '../src/lora/file.js';
import { fixture, readTensor, relL2 } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'todo-sd-lora-'));
const io = (): string => fixture('lora', 'io.safetensors');
const kohya = (): string => fixture('lora', 'lora-kohya.safetensors');

/** The kohya fixture's tensors, renamed (undefined drops one) and optionally converted to fp32. */
function rewrite(name: string, rename: (key: string) => string | undefined, opts: { f32?: boolean; extra?: Record<string, TensorToWrite>; metadata?: Record<string, string> } = {}): string {
  const src = SafetensorsFile.open(kohya());
  const out: Record<string, TensorToWrite> = {};
  for (const [key, info] of src.tensors) {
    const to = rename(key);
    if (to === undefined) continue;
    out[to] = opts.f32 ? { dtype: 'F32', shape: info.shape, data: src.readFloat32(key) } : { dtype: info.dtype, shape: info.shape, data: src.readBytes(key) };
  }
  const path = join(dir, `${name}.safetensors`);
  writeSafetensors(path, { ...out, ...opts.extra }, opts.metadata);
  return path;
}

const f16 = (shape: number[]): TensorToWrite => ({ dtype: 'F16', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01) });

async function unetError(path: string): Promise<number> {
  const unet = await loadUNet(BUILTIN_MODEL_DIR, { loras: [{ path, scale: 0.8 }] });
  const t = readTensor(io(), 'unet_timestep').data[0]!;
  const out = await unet.forward(readTensor(io(), 'unet_sample'), t, readTensor(io(), 'unet_encoder_hidden_states'));
  await unet.dispose();
  return relL2(out.data, readTensor(io(), 'unet_out_lora').data);
}

test('diffusers/PEFT key names (unet.….lora_A / lora_B, text_encoder.….lora.down / up) in fp32 give the same merge', async () => {
  const peft = rewrite(
    'peft',
    (k) => {
      const m = /^lora_(unet|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/.exec(k)!;
      const comp = m[1] === 'unet' ? 'unet' : 'text_encoder';
      // Back to dotted diffusers names through the fixture's own module list.
      const module = modules.get(`lora_${m[1]}_${m[2]}`)!;
      const role = m[3] === 'alpha' ? 'alpha' : comp === 'unet' ? (m[3] === 'lora_down.weight' ? 'lora_A.weight' : 'lora_B.weight') : m[3]!.replace('_', '.');
      return `${comp}.${module}.${role}`;
    },
    { f32: true },
  );
  assert.ok(SafetensorsFile.open(peft).has('unet.down_blocks.0.attentions.0.proj_in.lora_A.weight'));
  assert.ok(SafetensorsFile.open(peft).has('text_encoder.text_model.encoder.layers.0.mlp.fc1.lora.up.weight'));
  const err = await unetError(peft);
  assert.ok(err <= 1e-4, `U-Net relative L2 error ${err}`);
  const te = await loadTextEncoder(BUILTIN_MODEL_DIR, { loras: [{ path: peft, scale: 0.8 }] });
  const h = await te.forward({ data: SafetensorsFile.open(io()).readInt64('te_input_ids'), dims: [2, 77] });
  await te.dispose();
  assert.ok(relL2(h.data, readTensor(io(), 'te_out_lora').data) <= 1e-4);
});

const modules = new Map(
  (JSON.parse(readFileSync(fixture('lora', 'cases.json'), 'utf8')) as { modules: { module: string; kohya: string }[] }).modules.map((m) => [m.kohya, m.module]),
);

test("SDXL-style lora_te1_ names are the (first) text encoder's", async () => {
  const te1 = rewrite('te1', (k) => k.replace(/^lora_te_/, 'lora_te1_'));
  const te = await loadTextEncoder(BUILTIN_MODEL_DIR, { loras: [{ path: te1, scale: 0.8 }] });
  const h = await te.forward({ data: SafetensorsFile.open(io()).readInt64('te_input_ids'), dims: [2, 77] });
  await te.dispose();
  assert.ok(relL2(h.data, readTensor(io(), 'te_out_lora').data) <= 1e-4);
});

test('alpha absent → alpha = rank; scale 0 and a missing module change what they should', async () => {
  // Without alpha tensors the deltas are larger (alpha/rank = 1 instead of ≤ 1): no longer the reference.
  const noAlpha = rewrite('no-alpha', (k) => (k.endsWith('.alpha') ? undefined : k));
  assert.ok((await unetError(noAlpha)) > 1e-3);
  const base = await loadUNet(BUILTIN_MODEL_DIR, { loras: [{ path: kohya(), scale: 0 }] });
  const t = readTensor(io(), 'unet_timestep').data[0]!;
  const out = await base.forward(readTensor(io(), 'unet_sample'), t, readTensor(io(), 'unet_encoder_hidden_states'));
  await base.dispose();
  assert.ok(relL2(out.data, readTensor(io(), 'unet_out_base').data) <= 1e-4, 'scale 0 is the base model');
});

test('keys that match nothing are reported (count and first names), the rest applied', async () => {
  const path = rewrite('extra-keys', (k) => k, {
    extra: {
      'lora_unet_down_blocks_7_resnets_0_conv1.lora_down.weight': f16([4, 64, 3, 3]),
      'lora_unet_down_blocks_7_resnets_0_conv1.lora_up.weight': f16([64, 4, 1, 1]),
      'lora_prior_unet_something.lora_down.weight': f16([4, 8]),
      'lora_prior_unet_something.lora_up.weight': f16([8, 4]),
    },
  });
  const warnings: string[] = [];
  const unet = await loadUNet(BUILTIN_MODEL_DIR, { loras: [{ path, scale: 0.8 }], onWarning: (m) => warnings.push(m) });
  await unet.dispose();
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, /extra-keys: 2 of 129 modules match nothing in this model and are ignored: lora_unet_down_blocks_7_resnets_0_conv1, lora_prior_unet_something/);
  assert.ok((await unetError(path)) <= 1e-4, 'the matching modules are still applied');
});

test('a LoRA for another architecture is a clear error', async () => {
  const wrongShape = rewrite('sd2-like', (k) => k, {
    extra: {
      'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': f16([4, 1024]),
    },
  });
  await assert.rejects(loadUNet(BUILTIN_MODEL_DIR, { loras: [{ path: wrongShape, scale: 1 }] }), /attn2_to_k .*does not fit the U-Net's down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight \[64, 32\]: the LoRA was made for another model architecture/);
  const sdxl = rewrite('sdxl-like', (k) => k, {
    extra: {
      'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': f16([4, 1280]),
      'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': f16([1280, 4]),
    },
  });
  await assert.rejects(StableDiffusion.load(BUILTIN_MODEL_DIR, { loras: [{ path: sdxl, scale: 1 }] }), /sdxl-like: 1 module \(lora_te2_text_model_encoder_layers_0_self_attn_q_proj\) for the second text encoder \(SDXL\), which this model does not have/);
  const nothing = rewrite('all-foreign', (k) => k.replace('lora_unet_down_blocks', 'lora_unet_double_blocks').replace('lora_unet_up_blocks', 'lora_unet_single_blocks').replace('lora_unet_mid_block', 'lora_unet_final').replace(/^lora_te_/, 'lora_te2_'));
  await assert.rejects(loadUNet(BUILTIN_MODEL_DIR, { loras: [{ path: nothing, scale: 1 }] }), /none of its 115 U-Net modules .* names a layer of this model/);
  const unknown = rewrite('other-model', (k) => k.replace(/^lora_(unet|te)_/, 'lora_transformer_'));
  await assert.rejects(StableDiffusion.load(BUILTIN_MODEL_DIR, { loras: [{ path: unknown, scale: 1 }] }), /other-model: none of its 127 modules .* names a part of this model/);
});

test('a file that is not a LoRA, or is missing, is a clear error', async () => {
  const notLora = join(dir, 'weights.safetensors');
  writeSafetensors(notLora, { 'conv_in.weight': f16([4, 4, 3, 3]) });
  await assert.rejects(loadUNet(BUILTIN_MODEL_DIR, { loras: [{ path: notLora, scale: 1 }] }), /LoRA weights\.safetensors: this is not a LoRA: no lora_down\/lora_up .*found conv_in\.weight/);
  await assert.rejects(loadUNet(BUILTIN_MODEL_DIR, { loras: [{ path: join(dir, 'nope.safetensors'), scale: 1 }] }), /nope\.safetensors: file not found/);
  const half = rewrite('half', (k) => (k.endsWith('lora_up.weight') && k.includes('mid_block_resnets_0_conv1') ? undefined : k));
  assert.throws(() => LoraFile.open(half), /module "lora_unet_mid_block_resnets_0_conv1" has a down matrix but no up matrix/);
  const loha = rewrite('loha', (k) => k, { extra: { 'lora_unet_conv_in.hada_w1_a': f16([4, 4]) } });
  assert.throws(() => LoraFile.open(loha), /LoHa/);
});

test("A1111's hash: sha256 of the tensor data after the header, or sshs_model_hash from the metadata", () => {
  const bytes = readFileSync(kohya());
  const data = bytes.subarray(8 + Number(bytes.readBigUInt64LE(0)));
  const file = LoraFile.open(kohya());
  assert.equal(file.hash(), createHash('sha256').update(data).digest('hex'));
  assert.equal(file.shortHash(), file.hash().slice(0, 12));
  assert.notEqual(file.hash(), createHash('sha256').update(bytes).digest('hex'), 'not the whole file');
  const withMeta = rewrite('meta', (k) => k, { metadata: { sshs_model_hash: 'abcdef0123456789' } });
  assert.equal(LoraFile.open(withMeta).shortHash(), 'abcdef012345');
});
