import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BUILTIN_MODEL_DIR, loadTextEncoder, loadUNet, parseUNetConfig, SafetensorsFile } from '../src/index.js';
import { ldmModuleName } from '../src/lora/names.js';
import { fixture, readTensor, relL2 } from './helpers.js';
import { join } from 'node:path';

const model = BUILTIN_MODEL_DIR;
const io = (): string => fixture('lora', 'io.safetensors');

interface Cases {
  modules: { module: string; part: string; kohya: string; ldm: string }[];
}

test('LDM block numbers follow the U-Net config (every fixture module)', () => {
  const cases = JSON.parse(readFileSync(fixture('lora', 'cases.json'), 'utf8')) as Cases;
  const cfg = parseUNetConfig(JSON.parse(readFileSync(join(model, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>);
  const unet = cases.modules.filter((m) => m.part === 'unet');
  assert.equal(unet.length, 115);
  for (const m of unet) assert.equal(`lora_unet_${ldmModuleName(cfg, m.module)!.replace(/\./g, '_')}`, m.ldm, m.module);
});

for (const style of ['kohya', 'ldm'] as const) {
  test(`${style}-style LoRA at 0.8: U-Net and text encoder match diffusers' fused model`, async () => {
    const lora = { path: fixture('lora', `lora-${style}.safetensors`), scale: 0.8 };
    const warnings: string[] = [];
    const unet = await loadUNet(model, { loras: [lora], onWarning: (m) => warnings.push(m) });
    const t = readTensor(io(), 'unet_timestep').data[0]!;
    const out = await unet.forward(readTensor(io(), 'unet_sample'), t, readTensor(io(), 'unet_encoder_hidden_states'));
    const ref = readTensor(io(), 'unet_out_lora');
    assert.deepEqual(out.dims, ref.dims);
    const err = relL2(out.data, ref.data);
    assert.ok(err <= 1e-4, `U-Net relative L2 error ${err}`);
    assert.ok(relL2(out.data, readTensor(io(), 'unet_out_base').data) > 0.05, 'the LoRA changes the U-Net');
    await unet.dispose();

    const ids = SafetensorsFile.open(io()).readInt64('te_input_ids');
    const te = await loadTextEncoder(model, { loras: [lora], onWarning: (m) => warnings.push(m) });
    const h = await te.forward({ data: ids, dims: [2, 77] });
    const teErr = relL2(h.data, readTensor(io(), 'te_out_lora').data);
    assert.ok(teErr <= 1e-4, `text encoder relative L2 error ${teErr}`);
    assert.ok(relL2(h.data, readTensor(io(), 'te_out_base').data) > 0.05, 'the LoRA changes the text encoder');
    await te.dispose();
    assert.deepEqual(warnings, []);
  });
}
