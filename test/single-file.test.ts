import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, cpSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTextEncoder, loadUNet, loadVAE, SafetensorsFile, writeSafetensors } from '../src/index.js';
import type { WeightRef } from '../src/graph/weights.js';
import { toFloat32, type DType } from '../src/io/safetensors.js';
import { SingleFileCheckpoint, type CheckpointComponentName } from '../src/models/single-file/checkpoint.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { serializeModel } from '../src/graph/serialize.js';
import { linear } from '../src/models/layers.js';
import { createSession, ort } from '../src/runtime/session.js';
import { fixture, readTensor, relL2 } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'todo-sd-single-'));
const DTYPES: Record<WeightRef['type'], DType | undefined> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', int64: undefined, bool: undefined };

/** The values a graph initializer would hold for `ref`, in the shape the builder asked for. */
function readRef(folder: string, ref: WeightRef): Float32Array {
  const bytes = Buffer.alloc(ref.length);
  const fd = openSync(join(folder, ref.file), 'r');
  try {
    readSync(fd, bytes, 0, ref.length, ref.offset);
  } finally {
    closeSync(fd);
  }
  const values = toFloat32(bytes, DTYPES[ref.type]!);
  if (!ref.transposed) return values;
  const [rows, cols] = ref.shape as [number, number];
  return Float32Array.from({ length: rows * cols }, (_, i) => values[(i % cols) * rows + Math.floor(i / cols)]!);
}

for (const name of ['sd1-tiny', 'sd2-tiny']) {
  for (const kind of ['file', 'folder']) {
    test(`single-file/${name}-${kind}: U-Net out_full and VAE decode match diffusers`, async () => {
      const dir = fixture('single-file', 'checks', `${name}-${kind}`);
      const { model } = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as { model: string };
      const io = join(dir, 'io.safetensors');
      const unet = await loadUNet(join(dir, model));
      const out = await unet.forward(readTensor(io, 'sample'), readTensor(io, 'timestep').data[0]!, readTensor(io, 'encoder_hidden_states'));
      const ref = readTensor(io, 'out_full');
      assert.deepEqual(out.dims, ref.dims);
      assert.ok(relL2(out.data, ref.data) <= 1e-4, `U-Net relative L2 error ${relL2(out.data, ref.data)}`);
      const vae = await loadVAE(join(dir, model));
      const image = await vae.decode(readTensor(io, 'vae_latents'));
      const decoded = readTensor(io, 'vae_decoded');
      assert.deepEqual(image.dims, decoded.dims);
      assert.ok(relL2(image.data, decoded.data) <= 1e-4, `VAE relative L2 error ${relL2(image.data, decoded.data)}`);
      await unet.dispose();
      await vae.dispose();
    });
  }
}

test('single-file/sdxl-tiny-file: the SGM checkpoint VAE (fp32 in a mixed-dtype file) decodes as diffusers', async () => {
  const io = fixture('single-file', 'checks', 'sdxl-tiny-file', 'io.safetensors');
  const vae = await loadVAE(fixture('single-file', 'sdxl-tiny.safetensors'));
  assert.equal(vae.config.scalingFactor, 0.13025);
  const image = await vae.decode(readTensor(io, 'vae_latents'));
  const decoded = readTensor(io, 'vae_decoded');
  assert.deepEqual(image.dims, decoded.dims);
  assert.ok(relL2(image.data, decoded.data) <= 1e-4, `VAE relative L2 error ${relL2(image.data, decoded.data)}`);
  await vae.dispose();
});

/** Token ids with a start token, a few words, then end tokens: any fixed ids do. */
const ids = { data: Int32Array.from({ length: 2 * 77 }, (_, i) => (i % 77 === 0 ? 49406 : i % 77 < 9 ? (i * 7919) % 49000 : 49407)), dims: [2, 77] };

test('single-file/sd2-tiny: the OpenCLIP encoder (fused q/k/v, 24 resblocks) gives the folder encoder outputs', async () => {
  const file = await loadTextEncoder(fixture('single-file', 'sd2-tiny.safetensors'));
  const folder = await loadTextEncoder(fixture('single-file', 'sd2-tiny'));
  assert.equal(file.config.layers, 23, 'SD 2.x conditions on the penultimate resblock');
  const a = await file.forward(ids);
  const b = await folder.forward(ids);
  assert.ok(relL2(a.data, b.data) <= 1e-4, `relative L2 error ${relL2(a.data, b.data)}`);
  await file.dispose();
  await folder.dispose();
});

test('single-file/sd1-tiny: the CLIP encoder gives the folder encoder outputs at the file precision (fp16)', async () => {
  // The file holds the folder's weights rounded to fp16: round the folder the same way.
  const dir = join(tmp, 'sd1-te-fp16');
  cpSync(fixture('single-file', 'sd1-tiny', 'text_encoder'), join(dir, 'text_encoder'), { recursive: true });
  const path = join(dir, 'text_encoder', 'model.safetensors');
  const f = SafetensorsFile.open(path);
  writeSafetensors(path, Object.fromEntries([...f.tensors.values()].map((t) => [t.name, { dtype: t.dtype === 'F32' ? 'F16' : t.dtype, shape: t.shape, data: t.dtype === 'F32' ? f.readFloat32(t.name) : new Uint8Array(f.readBytes(t.name)) }])));
  const file = await loadTextEncoder(fixture('single-file', 'sd1-tiny.safetensors'));
  const folder = await loadTextEncoder(dir);
  const a = await file.forward(ids);
  const b = await folder.forward(ids);
  assert.ok(relL2(a.data, b.data) <= 1e-4, `relative L2 error ${relL2(a.data, b.data)}`);
  await file.dispose();
  await folder.dispose();
});

/** Every tensor of a diffusers folder component, found through the checkpoint's mapping with equal values. */
function assertMapsEveryTensor(checkpoint: SingleFileCheckpoint, folder: string, name: CheckpointComponentName): number {
  const { weights } = checkpoint.component(name);
  const file = readdirSync(join(folder, name)).find((f) => f.endsWith('.safetensors'))!;
  const st = SafetensorsFile.open(join(folder, name, file));
  let n = 0;
  for (const t of st.tensors.values()) {
    if (t.name.endsWith('position_ids')) continue;
    const ref = weights.get(t.name, t.shape);
    assert.deepEqual(ref.shape, t.shape, t.name);
    const got = readRef(weights.folder, ref);
    const want = st.readFloat32(t.name);
    assert.ok(got.every((v, i) => v === want[i]), `${name}: ${t.name} differs from the checkpoint's values`);
    n++;
  }
  return n;
}

test('single-file/sdxl-tiny (SGM): every tensor of the diffusers folder maps to a checkpoint tensor with equal values', () => {
  const checkpoint = SingleFileCheckpoint.open(fixture('single-file', 'sdxl-tiny.safetensors'));
  assert.equal(checkpoint.family, 'sdxl');
  const folder = fixture('sdxl-tiny');
  for (const name of ['unet', 'vae', 'text_encoder', 'text_encoder_2'] as const) {
    assert.ok(assertMapsEveryTensor(checkpoint, folder, name) > 0, name);
  }
  const text2 = SafetensorsFile.open(join(folder, 'text_encoder_2', 'model.safetensors'));
  const ref = checkpoint.component('text_encoder_2').weights.get('text_projection.weight', text2.info('text_projection.weight').shape);
  assert.equal(ref.transposed, true, 'OpenCLIP text_projection is stored [W, E] and transposed in the graph');
});

test('single-file/sd2-tiny (LDM): every tensor of the diffusers folder maps to a checkpoint tensor with equal values', () => {
  // (sd1's file holds fp16 roundings of its fp32 folder: its encoder is compared above, its U-Net and VAE by the checks.)
  const sd2 = SingleFileCheckpoint.open(fixture('single-file', 'sd2-tiny.safetensors'));
  for (const name of ['unet', 'vae', 'text_encoder'] as const) assertMapsEveryTensor(sd2, fixture('single-file', 'sd2-tiny'), name);
});

test('single-file: configs read off the shapes and the .yaml equal the diffusers folders', () => {
  const pick = (c: Record<string, unknown>, keys: string[]): Record<string, unknown> => Object.fromEntries(keys.map((k) => [k, JSON.stringify(c[k])]));
  const unetKeys = ['in_channels', 'out_channels', 'block_out_channels', 'down_block_types', 'up_block_types', 'layers_per_block', 'cross_attention_dim', 'use_linear_projection'];
  const cases: [string, string, string[]][] = [
    // sample_size: 512 px for SD 1.x, 768 px for v-prediction (as diffusers); the tiny SDXL folder's is not SDXL's 1024.
    ['sd1-tiny', fixture('single-file', 'sd1-tiny'), [...unetKeys, 'attention_head_dim', 'sample_size']],
    ['sd2-tiny', fixture('single-file', 'sd2-tiny'), [...unetKeys, 'attention_head_dim', 'sample_size']],
    ['sdxl-tiny', fixture('sdxl-tiny'), [...unetKeys, 'addition_embed_type', 'addition_time_embed_dim', 'projection_class_embeddings_input_dim']],
  ];
  for (const [name, folder, keys] of cases) {
    const checkpoint = SingleFileCheckpoint.open(fixture('single-file', `${name}.safetensors`));
    const folderUNet = JSON.parse(readFileSync(join(folder, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>;
    const unet = checkpoint.component('unet').config;
    // diffusers writes SD 1.x's 8 heads as a number; the per-level list says the same.
    if (typeof folderUNet.attention_head_dim === 'number') folderUNet.attention_head_dim = (unet.block_out_channels as number[]).map(() => folderUNet.attention_head_dim);
    assert.deepEqual(pick(unet, keys), pick(folderUNet, keys), `${name} unet`);
    const vaeKeys = ['in_channels', 'out_channels', 'latent_channels', 'block_out_channels', 'layers_per_block', 'scaling_factor'];
    const folderVae = JSON.parse(readFileSync(join(folder, 'vae', 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(pick(checkpoint.component('vae').config, vaeKeys), pick(folderVae, vaeKeys), `${name} vae`);
  }
  const xl = SingleFileCheckpoint.open(fixture('single-file', 'sdxl-tiny.safetensors'));
  // Per level, with 1 where a level has no attention (diffusers' own SDXL configs do the same).
  assert.deepEqual(xl.component('unet').config.transformer_layers_per_block, [1, 1, 2]);
  const te2 = xl.component('text_encoder_2').config;
  assert.deepEqual([te2.hidden_size, te2.num_hidden_layers, te2.intermediate_size, te2.projection_dim, te2.hidden_act], [16, 3, 64, 12, 'gelu']);
});

test('single-file/sdxl-tiny: OpenCLIP text_projection, stored [W, E], is transposed in the graph (no copy on disk)', async () => {
  const { weights } = SingleFileCheckpoint.open(fixture('single-file', 'sdxl-tiny.safetensors')).component('text_encoder_2');
  const g = new GraphBuilder('projection', weights);
  const x = g.input('x', [2, 16]);
  g.output(linear(g, 'text_projection', x, 12, false), 'y');
  const session = await createSession(serializeModel(g.build()), weights.folder);
  const input = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i));
  const y = (await session.run({ x: new ort.Tensor('float32', input, [2, 16]) })).y!.data as Float32Array;
  // transformers' Linear: y = x · Wᵀ with W [E, W] from the diffusers folder.
  const w = readTensor(fixture('sdxl-tiny', 'text_encoder_2', 'model.safetensors'), 'text_projection.weight').data;
  const want = Float32Array.from({ length: 24 }, (_, i) => {
    const [b, e] = [Math.floor(i / 12), i % 12];
    let sum = 0;
    for (let k = 0; k < 16; k++) sum += input[b * 16 + k]! * w[e * 16 + k]!;
    return sum;
  });
  assert.ok(relL2(y, want) <= 1e-6, `relative L2 error ${relL2(y, want)}`);
  await session.release();
});
