import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTextEncoder, loadUNet, loadVAE, SafetensorsFile, StableDiffusion, writeSafetensors, type TensorToWrite } from '../src/index.js';
import { SingleFileCheckpoint } from '../src/models/single-file/checkpoint.js';
import { fixture, readTensor, relL2, runCli } from './helpers.js';
import { tensorsOf, writeTorchFile } from './torch-writer.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-single-input-'));
const sd1 = (): string => fixture('single-file', 'sd1-tiny.safetensors');
const sd2 = (): string => fixture('single-file', 'sd2-tiny.safetensors');

/** Writes a copy of a safetensors file: `edit` returns the tensor to write under each name (null drops it). */
function rewrite(src: string, dst: string, edit: (name: string, t: TensorToWrite) => TensorToWrite | null, extra: Record<string, TensorToWrite> = {}): string {
  const f = SafetensorsFile.open(src);
  const out: Record<string, TensorToWrite> = {};
  for (const t of f.tensors.values()) {
    const e = edit(t.name, { dtype: t.dtype, shape: t.shape, data: new Uint8Array(f.readBytes(t.name)) });
    if (e) out[t.name] = e;
  }
  writeSafetensors(dst, { ...out, ...extra });
  return dst;
}

const asBf16 = (f: SafetensorsFile, name: string, t: TensorToWrite): TensorToWrite => ({ dtype: 'BF16', shape: t.shape, data: f.readFloat32(name) });

async function unetOut(model: string, io: string): Promise<Float32Array> {
  const unet = await loadUNet(model);
  const out = await unet.forward(readTensor(io, 'sample'), readTensor(io, 'timestep').data[0]!, readTensor(io, 'encoder_hidden_states'));
  await unet.dispose();
  return out.data;
}

test('single file in bf16 with EMA keys: the same U-Net as the folder in bf16', async () => {
  const src = SafetensorsFile.open(sd2());
  const file = rewrite(
    sd2(),
    join(root, 'sd2-bf16.safetensors'),
    (name, t) => (name.startsWith('model.diffusion_model.') ? asBf16(src, name, t) : t),
    {
      'model_ema.decay': { dtype: 'F32', shape: [], data: new Float32Array([0.9999]) },
      'model_ema.num_updates': { dtype: 'I64', shape: [], data: new BigInt64Array([1n]) },
      'model_ema.diffusion_modelinput_blocks00weight': { dtype: 'F32', shape: [32, 4, 3, 3], data: new Float32Array(32 * 4 * 9) },
    },
  );
  copyFileSync(fixture('single-file', 'sd2-tiny.yaml'), join(root, 'sd2-bf16.yaml'));
  const folder = join(root, 'sd2-folder-bf16');
  cpSync(fixture('single-file', 'sd2-tiny', 'unet'), join(folder, 'unet'), { recursive: true });
  const w = join(folder, 'unet', 'diffusion_pytorch_model.safetensors');
  const wf = SafetensorsFile.open(w);
  rewrite(w, w, (name, t) => asBf16(wf, name, t));
  const io = fixture('single-file', 'checks', 'sd2-tiny-file', 'io.safetensors');
  const a = await unetOut(file, io);
  const b = await unetOut(folder, io);
  assert.ok(relL2(a, b) <= 1e-5, `relative L2 error ${relL2(a, b)}`);
  // bf16 rounding moves the output, but not far: the values were read as bf16, not as garbage.
  assert.ok(relL2(a, readTensor(io, 'out_full').data) < 0.05);
});

test('CLIP in a checkpoint: position_ids are ignored, old transformers names (no text_model.) are read', async () => {
  const ids = { data: Int32Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 5 ? 320 + i : 49407)), dims: [1, 77] };
  const reference = await loadTextEncoder(sd1());
  const want = (await reference.forward(ids)).data;
  await reference.dispose();
  const withIds = rewrite(sd1(), join(root, 'sd1-position-ids.safetensors'), (_, t) => t, {
    'cond_stage_model.transformer.text_model.embeddings.position_ids': { dtype: 'I64', shape: [1, 77], data: BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)) },
  });
  const src = SafetensorsFile.open(sd1());
  const old: Record<string, TensorToWrite> = {};
  for (const t of src.tensors.values()) old[t.name.replace('cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.')] = { dtype: t.dtype, shape: t.shape, data: new Uint8Array(src.readBytes(t.name)) };
  const oldNames = join(root, 'sd1-old-names.safetensors');
  writeSafetensors(oldNames, old);
  for (const file of [withIds, oldNames]) {
    const encoder = await loadTextEncoder(file);
    assert.deepEqual((await encoder.forward(ids)).data, want, file);
    await encoder.dispose();
  }
});

test('keys that match no known layout: the error names the prefixes it found', async () => {
  const file = join(root, 'unknown.safetensors');
  writeSafetensors(file, {
    'foo.layer.weight': { dtype: 'F32', shape: [2], data: new Float32Array(2) },
    'foo.layer.bias': { dtype: 'F32', shape: [2], data: new Float32Array(2) },
    'bar.x.weight': { dtype: 'F32', shape: [1], data: new Float32Array(1) },
  });
  await assert.rejects(loadUNet(file), /match no checkpoint layout todo-sd knows \(found foo\.layer\.\* \(2\), bar\.x\.\* \(1\)\); expected LDM/);
  const lone = join(root, 'lone-diffusers-unet.safetensors');
  copyFileSync(fixture('single-file', 'sd1-tiny', 'unet', 'diffusion_pytorch_model.safetensors'), lone);
  await assert.rejects(loadUNet(lone), /one component of a diffusers folder: pass the folder/);
});

test('a truncated single file: named as truncated', async () => {
  const bytes = readFileSync(sd1());
  const file = join(root, 'truncated.safetensors');
  writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await assert.rejects(StableDiffusion.load(file), /truncated\.safetensors: tensor "[^"]+": data ends at byte \d+ but the file has \d+ bytes; the file is truncated/);
});

test('a single file without a VAE: says so and suggests --vae; with --vae it loads', async () => {
  const file = rewrite(sd1(), join(root, 'no-vae.safetensors'), (name, t) => (name.startsWith('first_stage_model.') ? null : t));
  copyFileSync(fixture('single-file', 'sd1-tiny.yaml'), join(root, 'no-vae.yaml'));
  await assert.rejects(StableDiffusion.load(file), /no-vae\.safetensors holds no VAE \(no first_stage_model\.\* tensors\); pass one with --vae/);
  const pipe = await StableDiffusion.load(file, { vae: fixture('single-file', 'sd1-tiny', 'vae') });
  const { images } = await pipe.generate({ prompt: 'a fox', width: 64, height: 64, steps: 2, seed: 1 });
  assert.equal(images[0]!.width, 64);
  await pipe.dispose();
});

test('PyTorch checkpoints load as the same model as the safetensors: .ckpt (A1111 state_dict, zip and legacy), a .pt VAE, .bin component weights', async () => {
  const io = fixture('single-file', 'checks', 'sd1-tiny-file', 'io.safetensors');
  const reference = await unetOut(sd1(), io);
  const f = SafetensorsFile.open(sd1());
  for (const format of ['zip', 'legacy'] as const) {
    const ckpt = join(root, `sd1-${format}.ckpt`);
    writeTorchFile(ckpt, tensorsOf(f), { format, wrap: 'state_dict', extra: { global_step: 470000, epoch: 6 } });
    assert.deepEqual(await unetOut(ckpt, io), reference, `${format}: the same weights give the same U-Net output`);
  }
  // A1111's `.vae.pt`: a lone VAE, wrapped in state_dict.
  const vaePt = join(root, 'tiny.vae.pt');
  writeTorchFile(vaePt, tensorsOf(f, (n) => (n.startsWith('first_stage_model.') ? n.slice('first_stage_model.'.length) : undefined)), { format: 'zip', wrap: 'state_dict' });
  const latents = readTensor(io, 'vae_latents');
  const [fromPt, fromFile] = await Promise.all([loadVAE(vaePt, { scalingFactor: 0.18215 }), loadVAE(sd1())]);
  assert.deepEqual((await fromPt.decode(latents)).data, (await fromFile.decode(latents)).data);
  // A diffusers component folder with only PyTorch weights (diffusion_pytorch_model.bin).
  const folder = join(root, 'sd1-bin');
  cpSync(fixture('single-file', 'sd1-tiny'), folder, { recursive: true });
  const st = join(folder, 'unet', 'diffusion_pytorch_model.safetensors');
  writeTorchFile(join(folder, 'unet', 'diffusion_pytorch_model.bin'), tensorsOf(SafetensorsFile.open(st)), { format: 'zip' });
  const fromSafetensors = await unetOut(folder, io);
  rmSync(st);
  assert.deepEqual(await unetOut(folder, io), fromSafetensors);
  const r = runCli(root, 'generate', '--model', join(root, 'sd1-zip.ckpt'), '-p', 'x', '--width', '64', '--height', '64', '--steps', '1', '--out', join(root, 'x.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout + r.stderr + readFileSync(join(root, 'x.png')).toString('latin1'), /Model: sd1-zip/);
  await assert.rejects(StableDiffusion.load(join(root, 'absent.ckpt')), /model file .*absent\.ckpt not found/);
  await assert.rejects(StableDiffusion.load(join(root, 'absent.safetensors')), /model file .*absent\.safetensors not found/);
});

test('a VAE of another family is refused; a lone VAE file decodes as the checkpoint VAE it came from', async () => {
  await assert.rejects(
    StableDiffusion.load(sd1(), { vae: fixture('single-file', 'sdxl-tiny.safetensors') }),
    /--vae .*sdxl-tiny\.safetensors is a VAE of another model family: its latent scaling factor is 0\.13025 \(SDXL\), the model's is 0\.18215 \(SD 1\.x \/ 2\.x\)/,
  );
  await assert.rejects(StableDiffusion.load(sd1(), { vae: fixture('sdxl-tiny', 'vae') }), /is a VAE of another model family/);

  const prefix = 'first_stage_model.';
  const src = SafetensorsFile.open(sd1());
  const lone = join(root, 'lone-vae.safetensors');
  writeSafetensors(
    lone,
    Object.fromEntries([...src.tensors.values()].filter((t) => t.name.startsWith(prefix)).map((t) => [t.name.slice(prefix.length), { dtype: t.dtype, shape: t.shape, data: new Uint8Array(src.readBytes(t.name)) }])),
  );
  const io = fixture('single-file', 'checks', 'sd1-tiny-file', 'io.safetensors');
  const vae = await loadVAE(lone);
  const image = await vae.decode(readTensor(io, 'vae_latents'));
  assert.ok(relL2(image.data, readTensor(io, 'vae_decoded').data) <= 1e-4);
  await vae.dispose();
  const pipe = await StableDiffusion.load(sd2(), { vae: lone });
  assert.equal(pipe.vae.config.scalingFactor, 0.18215, "a lone VAE file takes the model's scaling factor");
  await pipe.dispose();
  // A diffusers VAE weights file: its config.json beside it says what it is.
  const diffusersFile = await StableDiffusion.load(sd1(), { vae: fixture('single-file', 'sd2-tiny', 'vae', 'diffusion_pytorch_model.safetensors') });
  await diffusersFile.dispose();
  await assert.rejects(loadUNet(lone), /lone-vae\.safetensors is a lone VAE; it has no unet/);
});

test('what the keys cannot say: from the .yaml beside the file, else the family rules; --prediction overrides', async () => {
  const dir = join(root, 'no-yaml');
  mkdirSync(dir);
  const bare = join(dir, 'sd2-tiny.safetensors');
  copyFileSync(sd2(), bare);
  // sd2-tiny has 2 heads of 16 channels: only its .yaml says so; SD 2.x's rule (64 channels per head) does not fit.
  await assert.rejects(loadUNet(bare), /32 channels at level 0 do not split into heads of 64 channels/);
  const withYaml = SingleFileCheckpoint.open(sd2());
  assert.deepEqual(withYaml.component('unet').config.attention_head_dim, [2, 2, 2, 2]);
  assert.equal(withYaml.prediction, 'v');

  const noYaml = SingleFileCheckpoint.open(bare);
  assert.equal(noYaml.prediction, 'v', "SD 2.x without a .yaml: v-prediction, as diffusers' default SD 2.x config");
  assert.deepEqual([noYaml.schedulerConfig()._class_name, noYaml.schedulerConfig().prediction_type], ['DDIMScheduler', 'v_prediction']);
  const eps = SingleFileCheckpoint.open(bare, { prediction: 'epsilon' });
  assert.deepEqual([eps.schedulerConfig()._class_name, eps.schedulerConfig().prediction_type], ['PNDMScheduler', 'epsilon']);

  const v1 = SingleFileCheckpoint.open(sd1());
  assert.deepEqual([v1.prediction, v1.sampleSize, v1.schedulerConfig().beta_end], ['epsilon', 64, 0.012]);
  const yaml = join(root, 'custom-betas.yaml');
  writeFileSync(yaml, readFileSync(fixture('single-file', 'sd1-tiny.yaml'), 'utf8').replace('linear_end: 0.012', 'linear_end: 0.0125').replace('conditioning_key: crossattn', 'parameterization: v\n    conditioning_key: crossattn'));
  copyFileSync(sd1(), join(root, 'custom-betas.safetensors'));
  const custom = SingleFileCheckpoint.open(join(root, 'custom-betas.safetensors'));
  assert.deepEqual([custom.prediction, custom.sampleSize, custom.schedulerConfig().beta_end], ['v', 96, 0.0125]);

  const pipe = await StableDiffusion.load(sd1(), { prediction: 'v' });
  assert.equal(pipe.schedulerConfig.prediction_type, 'v_prediction');
  await pipe.dispose();
  await assert.rejects(StableDiffusion.load(sd1(), { prediction: 'x' as 'v' }), /prediction must be epsilon or v; got "x"/);
});

test('CLI: generate from a single file with --vae and --prediction; the infotext names the checkpoint', () => {
  const out = join(root, 'cli.png');
  const r = runCli(root, 'generate', '--model', sd1(), '--vae', fixture('single-file', 'sd2-tiny', 'vae'), '--prediction', 'epsilon', '-p', 'a fox', '-W', '64', '-H', '64', '--steps', '2', '--seed', '3', '--out', out, '--json');
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { parameters: string; sampler: string };
  assert.match(summary.parameters, /Model: sd1-tiny,/);
  assert.equal(summary.sampler, 'pndm');
  const bad = runCli(root, 'generate', '--model', sd1(), '--prediction', 'x0', '-p', 'x', '--out', out);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--prediction.*epsilon, v/);
});
