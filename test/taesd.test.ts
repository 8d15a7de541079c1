import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTinyVAE, parseTinyVAEConfig, randn, SafetensorsFile, writeRandomTinyVAE, writeSafetensors, type TensorToWrite } from '../src/index.js';
import { writeRandomTinyVAEFiles } from '../src/models/random-taesd.js';
import { tinyVAEFamilyOfName, tinyVAEInFolder } from '../src/models/taesd-source.js';
import { relL2 } from './helpers.js';
import { TinyVAEReference } from './taesd-reference.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-taesd-'));
after(() => rmSync(root, { recursive: true, force: true }));

// madebyollin's architecture (1, 3, 3, 3 / 3, 3, 3, 1 blocks, four levels) at 8 channels.
const FOUR = { config: { encoder_block_out_channels: [8, 8, 8, 8], decoder_block_out_channels: [8, 8, 8, 8] } };
const four = join(root, 'taesd-four');
writeRandomTinyVAE(four, FOUR, { seed: 5 });
const orig = join(root, 'orig');
writeRandomTinyVAEFiles(join(orig, 'taesd_decoder.safetensors'), FOUR, { seed: 5 });

const latents = { data: randn(11, [1, 4, 4, 6]), dims: [1, 4, 4, 6] };
const image = { data: randn(12, [1, 3, 32, 40]).map((v) => Math.tanh(v)), dims: [1, 3, 32, 40] };

test('the TAESD decoder equals diffusers\' DecoderTiny (plain-loop transcription) to 1e-5', async () => {
  const vae = await loadTinyVAE(four);
  const out = await vae.decode(latents);
  await vae.dispose();
  assert.deepEqual(out.dims, [1, 3, 32, 48]);
  const ref = new TinyVAEReference(four).decode(latents.data, 4, 4, 6);
  assert.deepEqual([ref.c, ref.h, ref.w], [3, 32, 48]);
  const rel = relL2(out.data, ref.d);
  assert.ok(rel < 1e-5, `relative L2 ${rel}`);
});

test('the TAESD encoder equals diffusers\' EncoderTiny (plain-loop transcription) to 1e-5', async () => {
  const vae = await loadTinyVAE(four);
  const out = await vae.encode(image);
  await vae.dispose();
  assert.deepEqual(out.dims, [1, 4, 4, 5]);
  const ref = new TinyVAEReference(four).encode(image.data, 3, 32, 40);
  const rel = relL2(out.data, ref.d);
  assert.ok(rel < 1e-5, `relative L2 ${rel}`);
});

test('a SiLU TAESD (act_fn "silu") equals the transcription too', async () => {
  const dir = join(root, 'taesd-silu');
  writeRandomTinyVAE(dir, { config: { ...FOUR.config, act_fn: 'silu', num_decoder_blocks: [1, 2, 0, 1], num_encoder_blocks: [1, 0, 2, 1] } }, { seed: 8 });
  const vae = await loadTinyVAE(dir);
  const dec = await vae.decode(latents);
  const enc = await vae.encode(image);
  await vae.dispose();
  const ref = new TinyVAEReference(dir);
  assert.ok(relL2(dec.data, ref.decode(latents.data, 4, 4, 6).d) < 1e-5);
  assert.ok(relL2(enc.data, ref.encode(image.data, 3, 32, 40).d) < 1e-5);
});

test("madebyollin's files use taesd.py's Sequential indices (the decoder's Clamp at 0)", () => {
  const dec = SafetensorsFile.open(join(orig, 'taesd_decoder.safetensors'));
  const enc = SafetensorsFile.open(join(orig, 'taesd_encoder.safetensors'));
  // taesd.py: Decoder = Clamp, conv, ReLU, 3 Blocks, Upsample, conv(bias=False), …, Block, conv.
  assert.deepEqual(dec.info('1.weight').shape, [8, 4, 3, 3]);
  for (const k of ['0.weight', '2.weight', '6.weight', '7.bias']) assert.ok(!dec.has(k), k);
  for (const k of ['3.conv.0.weight', '3.conv.4.bias', '7.weight', '18.conv.2.weight', '19.bias']) assert.ok(dec.has(k), k);
  assert.deepEqual(dec.info('19.weight').shape, [3, 8, 3, 3]);
  // Encoder = conv, Block, conv(stride 2, bias=False), 3 Blocks, …, conv.
  assert.deepEqual(enc.info('0.weight').shape, [8, 3, 3, 3]);
  for (const k of ['0.bias', '1.conv.0.weight', '2.weight', '13.conv.4.weight', '14.bias']) assert.ok(enc.has(k), k);
  assert.ok(!enc.has('2.bias'));
  assert.deepEqual(enc.info('14.weight').shape, [4, 8, 3, 3]);
});

test("madebyollin's files give exactly the diffusers folder's outputs (decoder file with its encoder beside it)", async () => {
  const [a, b] = await Promise.all([loadTinyVAE(four), loadTinyVAE(join(orig, 'taesd_decoder.safetensors'))]);
  assert.deepEqual(b.config, a.config);
  assert.deepEqual((await b.decode(latents)).data, (await a.decode(latents)).data);
  assert.deepEqual((await b.encode(image)).data, (await a.encode(image)).data);
  // Named by its encoder file, the same pair loads.
  const c = await loadTinyVAE(join(orig, 'taesd_encoder.safetensors'));
  assert.deepEqual((await c.decode(latents)).data, (await a.decode(latents)).data);
  await Promise.all([a.dispose(), b.dispose(), c.dispose()]);
});

test("ComfyUI's combined layout (taesd_encoder.* / taesd_decoder.* in one file) loads too", async () => {
  const tensors: Record<string, TensorToWrite> = { vae_scale: { dtype: 'F32', shape: [], data: Float32Array.of(0.18215) } };
  for (const part of ['encoder', 'decoder']) {
    const f = SafetensorsFile.open(join(orig, `taesd_${part}.safetensors`));
    for (const [k, t] of f.tensors) tensors[`taesd_${part}.${k}`] = { dtype: 'F32', shape: t.shape, data: f.readFloat32(k) };
  }
  const file = join(root, 'comfy', 'taesd_combined.safetensors');
  mkdirSync(join(root, 'comfy'));
  writeSafetensors(file, tensors);
  const [a, b] = await Promise.all([loadTinyVAE(four), loadTinyVAE(file)]);
  assert.equal(b.family, 'sd');
  assert.deepEqual((await b.decode(latents)).data, (await a.decode(latents)).data);
  assert.deepEqual((await b.encode(image)).data, (await a.encode(image)).data);
  await Promise.all([a.dispose(), b.dispose()]);
});

test('one half alone does its half; the other names the file it needs', async () => {
  const dir = join(root, 'halves');
  mkdirSync(dir);
  copyFileSync(join(orig, 'taesd_decoder.safetensors'), join(dir, 'taesdxl_decoder.safetensors'));
  copyFileSync(join(orig, 'taesd_encoder.safetensors'), join(dir, 'my_encoder.safetensors'));
  const dec = await loadTinyVAE(join(dir, 'taesdxl_decoder.safetensors'));
  assert.equal(dec.family, 'sdxl');
  assert.deepEqual((await dec.decode(latents)).dims, [1, 3, 32, 48]);
  await assert.rejects(dec.encode(image), /holds only a TAESD decoder.*taesd_encoder\.safetensors/);
  const enc = await loadTinyVAE(join(dir, 'my_encoder.safetensors'));
  assert.equal(enc.family, undefined);
  assert.deepEqual((await enc.encode(image)).dims, [1, 4, 4, 5]);
  await assert.rejects(enc.decode(latents), /holds only a TAESD encoder.*taesd_decoder\.safetensors/);
  await Promise.all([dec.dispose(), enc.dispose()]);
});

test('pickles are refused with the safetensors files to use; other files and layouts are named', async () => {
  await assert.rejects(loadTinyVAE(join(root, 'taesd_decoder.pth')), /pickle.*taesd_decoder\.safetensors.*huggingface\.co\/madebyollin\/taesd/);
  const pth = join(root, 'taesdxl_decoder.pth');
  writeFileSync(pth, Buffer.from([0x80, 0x02]));
  await assert.rejects(loadTinyVAE(pth), /pickle.*safetensors/);
  // A file of indexed modules with one more than the structure uses: another architecture.
  const f = SafetensorsFile.open(join(orig, 'taesd_decoder.safetensors'));
  const tensors: Record<string, TensorToWrite> = {};
  for (const [k, t] of f.tensors) tensors[k] = { dtype: 'F32', shape: t.shape, data: f.readFloat32(k) };
  tensors['21.weight'] = { dtype: 'F32', shape: [3, 3, 3, 3], data: new Float32Array(81) };
  const odd = join(root, 'odd_decoder.safetensors');
  writeSafetensors(odd, tensors);
  await assert.rejects(loadTinyVAE(odd), /21\.weight have no place in a TAESD decoder.*another architecture/);
  const other = join(root, 'other.safetensors');
  writeSafetensors(other, { 'encoder.conv_in.weight': { dtype: 'F32', shape: [1], data: Float32Array.of(1) } });
  await assert.rejects(loadTinyVAE(other), /is no TAESD file/);
});

test('the family comes from the name: taesdxl → SDXL, taesd → SD; TAESD3 / TAEF1 are neither', () => {
  assert.equal(tinyVAEFamilyOfName('/m/VAE-approx/taesdxl_decoder.safetensors'), 'sdxl');
  assert.equal(tinyVAEFamilyOfName('/m/VAE-approx/taesd_decoder.safetensors'), 'sd');
  assert.equal(tinyVAEFamilyOfName('/hf/models--madebyollin--taesdxl/snapshots/0abc/diffusion_pytorch_model.safetensors'), 'sdxl');
  assert.equal(tinyVAEFamilyOfName('/x/taesdxl/diffusion_pytorch_model.safetensors'), 'sdxl');
  assert.equal(tinyVAEFamilyOfName('/x/taesd'), 'sd');
  // Only the TAESD's own name counts: not the folders it happens to sit in.
  assert.equal(tinyVAEFamilyOfName('/home/taesd-tests/models/ae'), undefined);
  assert.equal(tinyVAEFamilyOfName('/home/taesd-tests/models/ae_decoder.safetensors'), undefined);
  assert.equal(tinyVAEFamilyOfName('/x/taesd3_decoder.safetensors'), undefined);
  assert.equal(tinyVAEFamilyOfName('/x/taef1/diffusion_pytorch_model.safetensors'), undefined);
  assert.equal(tinyVAEFamilyOfName('/x/tiny/decoder.safetensors'), undefined);
});

test('a folder with one TAESD per family (A1111 VAE-approx) gives each family its own', async () => {
  const dir = join(root, 'VAE-approx');
  mkdirSync(dir);
  copyFileSync(join(orig, 'taesd_decoder.safetensors'), join(dir, 'taesd_decoder.safetensors'));
  writeFileSync(join(dir, 'taesdxl_decoder.pth'), '');
  assert.equal(tinyVAEInFolder(dir, 'sd'), join(dir, 'taesd_decoder.safetensors'));
  assert.throws(() => tinyVAEInFolder(dir, 'sdxl'), /taesdxl_decoder\.pth is a PyTorch pickle.*safetensors/);
  rmSync(join(dir, 'taesdxl_decoder.pth'));
  assert.throws(() => tinyVAEInFolder(dir, 'sdxl'), /no TAESD for SDXL in .*taesdxl_decoder\.safetensors.*madebyollin\/taesdxl/);
  writeRandomTinyVAE(join(dir, 'taesdxl'), 'taesd-tiny');
  assert.equal(tinyVAEInFolder(dir, 'sdxl'), join(dir, 'taesdxl'));
  // Loaded alone, such a folder is ambiguous.
  await assert.rejects(loadTinyVAE(dir), /holds TAESDs for several families \(taesd_decoder\.safetensors, taesdxl\): pass the file for the model's family/);
});

test("scale_latents / unscale_latents are diffusers' (magnitude 3, shift 0.5)", async () => {
  const vae = await loadTinyVAE(four);
  const x = { data: Float32Array.of(-4, -3, 0, 1.5, 3, 4), dims: [1, 1, 2, 3] };
  assert.deepEqual(Array.from(vae.scaleLatents(x).data), [0, 0, 0.5, 0.75, 1, 1]);
  assert.deepEqual(Array.from(vae.unscaleLatents(vae.scaleLatents(x)).data), [-3, -3, 0, 1.5, 3, 3]);
  await vae.dispose();
});

test('AutoencoderTiny configs diffusers cannot run are refused by name', () => {
  assert.equal(parseTinyVAEConfig({}).scale, 8);
  assert.throws(() => parseTinyVAEConfig({ encoder_block_out_channels: [64, 32, 64, 64] }), /encoder_block_out_channels must repeat one width/);
  assert.throws(() => parseTinyVAEConfig({ upsampling_scaling_factor: 4 }), /upsampling_scaling_factor 4/);
  assert.throws(() => parseTinyVAEConfig({ act_fn: 'mish' }), /act_fn "mish" is not supported/);
  assert.throws(() => parseTinyVAEConfig({ num_decoder_blocks: [3, 3, 1] }), /num_decoder_blocks and decoder_block_out_channels differ/);
});
