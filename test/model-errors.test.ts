import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadUNet, loadVAE, SafetensorsFile, writeSafetensors } from '../src/index.js';
import { writeRandomModel } from '../src/models/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-err-'));
const model = join(root, 'tiny');

before(() => writeRandomModel(model, 'tiny', { seed: 1 }));

/** A copy of the tiny model's unet/ with its config or weights changed. */
function variantUNet(name: string, edit: { config?: (c: Record<string, unknown>) => void; dropKey?: string }): string {
  const dir = join(root, name);
  cpSync(join(model, 'unet'), join(dir, 'unet'), { recursive: true });
  if (edit.config) {
    const p = join(dir, 'unet', 'config.json');
    const c = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
    edit.config(c);
    writeFileSync(p, JSON.stringify(c));
  }
  if (edit.dropKey) {
    const p = join(dir, 'unet', 'diffusion_pytorch_model.safetensors');
    const f = SafetensorsFile.open(p);
    const tensors = Object.fromEntries(
      [...f.tensors.values()].filter((t) => t.name !== edit.dropKey).map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: new Uint8Array(f.readBytes(t.name)) }]),
    );
    writeSafetensors(p, tensors);
  }
  return dir;
}

test('random tiny model: the U-Net runs at any size the architecture allows, any batch', async () => {
  const unet = await loadUNet(model);
  for (const [b, h, w] of [
    [1, 8, 8],
    [3, 7, 13],
  ] as const) {
    const sample = { data: new Float32Array(b * 4 * h * w).fill(0.5), dims: [b, 4, h, w] };
    const text = { data: new Float32Array(b * 77 * 32).fill(0.1), dims: [b, 77, 32] };
    const out = await unet.forward(sample, 500, text);
    assert.deepEqual(out.dims, [b, 4, h, w]);
    assert.ok(out.data.every(Number.isFinite));
  }
  await unet.dispose();
});

test('missing model folder or component: clear error', async () => {
  await assert.rejects(loadUNet(join(root, 'absent')), /model folder .*absent not found/);
  await assert.rejects(loadVAE(join(model, 'unet')), /no vae component in .*expected .*vae\/config\.json/);
});

test('missing weight key: named in the error at load time', async () => {
  const dir = variantUNet('dropped', { dropKey: 'down_blocks.0.resnets.0.conv1.weight' });
  await assert.rejects(loadUNet(dir), /unet: weight "down_blocks\.0\.resnets\.0\.conv1\.weight" is missing from diffusion_pytorch_model\.safetensors/);
});

test('weights of the wrong shape: named in the error', async () => {
  const dir = variantUNet('wider', { config: (c) => (c.block_out_channels = [32, 128]) });
  await assert.rejects(loadUNet(dir), /unet: weight "[^"]+" has shape \[[\d, ]+\] but the config implies \[[\d, ]+\]/);
});

test('unknown block type, unsupported addition embedding and an incomplete SDXL config: clear errors', async () => {
  const dir = variantUNet('unknown-block', { config: (c) => (c.down_block_types = ['CrossAttnDownBlock2D', 'SimpleCrossAttnDownBlock2D']) });
  await assert.rejects(loadUNet(dir), /unknown block type "SimpleCrossAttnDownBlock2D" in down_block_types; supported: CrossAttnDownBlock2D, DownBlock2D/);
  const xl = variantUNet('xl', { config: (c) => (c.addition_embed_type = 'text_time') });
  await assert.rejects(loadUNet(xl), /"text_time" needs integer addition_time_embed_dim and projection_class_embeddings_input_dim/);
  const image = variantUNet('image-embeds', { config: (c) => (c.addition_embed_type = 'image') });
  await assert.rejects(loadUNet(image), /addition_embed_type = "image" is not supported; only "text_time" \(SDXL\) is/);
});

test('wrong input shapes: clear errors before onnxruntime runs', async () => {
  const unet = await loadUNet(model);
  const text = { data: new Float32Array(77 * 32), dims: [1, 77, 32] };
  await assert.rejects(unet.forward({ data: new Float32Array(3 * 8 * 8), dims: [1, 3, 8, 8] }, 1, text), /unet: sample must have shape \[\*, 4, \*, \*\].*got \[1, 3, 8, 8\]/);
  await assert.rejects(unet.forward({ data: new Float32Array(4 * 8 * 8), dims: [1, 4, 8, 8] }, 1, { data: new Float32Array(77 * 16), dims: [1, 77, 16] }), /encoder_hidden_states must have shape \[1, \*, 32\]/);
  await assert.rejects(unet.forward({ data: new Float32Array(10), dims: [1, 4, 8, 8] }, 1, text), /sample must have shape/);
  await assert.rejects(unet.forward({ data: new Float32Array(4 * 64), dims: [1, 4, 8, 8] }, NaN, text), /timestep must be a finite number/);
  const vae = await loadVAE(model);
  await assert.rejects(vae.decode({ data: new Float32Array(3 * 4), dims: [1, 3, 2, 2] }), /vae: latents must have shape \[\*, 4, \*, \*\]/);
  await unet.dispose();
  await vae.dispose();
});
