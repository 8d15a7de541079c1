import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseUNetConfig, StableDiffusion, writeSafetensors } from '../src/index.js';
import type { TensorToWrite } from '../src/index.js';
import { ARCHITECTURE_CONFIGS } from '../src/models/architectures.js';
import { ldmModuleName } from '../src/lora/names.js';
import { fixture } from './helpers.js';

test("LDM names on SDXL's layout (layers_per_block 2, no attention at the top level) are sgm's", () => {
  const cfg = parseUNetConfig(ARCHITECTURE_CONFIGS.sdxl.unet);
  const expect: [string, string][] = [
    ['down_blocks.0.resnets.1.conv2', 'input_blocks.2.0.out_layers.3'],
    ['down_blocks.0.downsamplers.0.conv', 'input_blocks.3.0.op'],
    ['down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k', 'input_blocks.4.1.transformer_blocks.1.attn2.to_k'],
    ['down_blocks.2.attentions.1.proj_in', 'input_blocks.8.1.proj_in'],
    ['mid_block.attentions.0.transformer_blocks.9.ff.net.2', 'middle_block.1.transformer_blocks.9.ff.net.2'],
    ['mid_block.resnets.1.time_emb_proj', 'middle_block.2.emb_layers.1'],
    ['up_blocks.0.attentions.2.proj_out', 'output_blocks.2.1.proj_out'],
    ['up_blocks.0.upsamplers.0.conv', 'output_blocks.2.2.conv'],
    ['up_blocks.1.upsamplers.0.conv', 'output_blocks.5.2.conv'],
    ['up_blocks.2.resnets.2.conv_shortcut', 'output_blocks.8.0.skip_connection'],
    ['add_embedding.linear_1', 'label_emb.0.0'],
  ];
  for (const [diffusers, ldm] of expect) assert.equal(ldmModuleName(cfg, diffusers), ldm, diffusers);
});

const dir = mkdtempSync(join(tmpdir(), 'todo-sd-lora-sdxl-'));

/** A LoRA (rank 2, small random values) for some modules, kohya-style names. */
function writeLora(name: string, modules: Record<string, readonly number[]>): string {
  const tensors: Record<string, TensorToWrite> = {};
  let seed = 1;
  const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.5);
  for (const [module, [out, ...rest]] of Object.entries(modules)) {
    const inner = rest.reduce((a, b) => a * b, 1);
    tensors[`${module}.lora_down.weight`] = { dtype: 'F16', shape: [2, ...rest], data: rand(2 * inner) };
    tensors[`${module}.lora_up.weight`] = { dtype: 'F16', shape: rest.length === 3 ? [out!, 2, 1, 1] : [out!, 2], data: rand(2 * out!) };
  }
  const path = join(dir, `${name}.safetensors`);
  writeSafetensors(path, tensors);
  return path;
}

test('SDXL: lora_te1_, lora_te2_ and LDM-named U-Net modules all apply, and each changes the picture', async () => {
  const model = fixture('sdxl-tiny');
  const warnings: string[] = [];
  const pipe = await StableDiffusion.load(model, { onWarning: (m) => warnings.push(m) });
  const [te1, te2] = pipe.sdxl!.textEncoders;
  const q1 = te1.loraTargets().get('text_model_encoder_layers_0_self_attn_q_proj')!;
  const q2 = te2.loraTargets().get('text_model_encoder_layers_0_self_attn_q_proj')!;
  assert.equal(te1.loraComponent, 'text_encoder');
  assert.equal(te2.loraComponent, 'text_encoder_2');
  assert.notDeepEqual(q1.shape, q2.shape, 'the two encoders differ in width');
  const attn = pipe.unet.loraTargets().get('input_blocks_4_1_transformer_blocks_0_attn1_to_q')!;
  assert.equal(attn.key, 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight');
  const files = {
    te1: writeLora('te1', { lora_te1_text_model_encoder_layers_0_self_attn_q_proj: q1.shape }),
    te2: writeLora('te2', { lora_te2_text_model_encoder_layers_0_self_attn_q_proj: q2.shape }),
    unet: writeLora('unet', { lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q: attn.shape, lora_unet_input_blocks_3_0_op: pipe.unet.loraTargets().get('input_blocks_3_0_op')!.shape }),
  };
  const o = { prompt: 'a red fox', width: 32, height: 32, steps: 2, seed: 5, sampler: 'euler' as const };
  const base = (await pipe.generate(o, { onWarning: (m) => warnings.push(m) })).images[0]!.data;
  for (const [part, path] of Object.entries(files)) {
    const img = (await pipe.generate({ ...o, loras: [{ path, scale: 1 }] }, { onWarning: (m) => warnings.push(m) })).images[0]!.data;
    assert.notDeepEqual(img, base, `the ${part} LoRA changes the picture`);
  }
  const again = (await pipe.generate(o)).images[0]!.data;
  assert.deepEqual(again, base);
  await pipe.dispose();
  assert.deepEqual(warnings, []);
});
