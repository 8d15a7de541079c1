import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import {
  a1111Parameters,
  BUILTIN_MODEL_DIR,
  createScheduler,
  decodePngRgb,
  loadTinyVAE,
  optionsFromParameters,
  parseParameters,
  randn,
  readPngText,
  StableDiffusion,
  toRgb,
  TorchGenerator,
  VAE,
  writeRandomTinyVAE,
  type RgbImage,
  type Tensor,
} from '../src/index.js';
import { encodeInitLatents, img2imgTimesteps, imagesToTensor } from '../src/pipeline/img2img.js';
import { writeRandomTinyVAEFiles } from '../src/models/random-taesd.js';
import { decodeTiled } from '../src/pipeline/vae-tiling.js';
import { fixture, relL2, runCli } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-taesd-pipe-'));
// Random TAESDs on the built-in model's latent grid (2 pixels per latent); named as madebyollin names them.
const taesd = join(root, 'taesd');
const taesdxl = join(root, 'taesdxl');
const unnamed = join(root, 'tiny-ae');
const decoderOnly = join(root, 'only', 'taesd_decoder.safetensors');
// madebyollin's shape (8 pixels per latent) at 8 channels, for the SDXL test model's grid.
const FOUR = { config: { encoder_block_out_channels: [8, 8, 8, 8], decoder_block_out_channels: [8, 8, 8, 8] } };
const taesd8 = join(root, 'taesd8');
const unnamed8 = join(root, 'ae8');
let full: StableDiffusion;
let tinyPipe: StableDiffusion;

before(async () => {
  writeRandomTinyVAE(taesd, 'taesd-tiny', { seed: 1 });
  writeRandomTinyVAE(taesdxl, 'taesd-tiny', { seed: 2 });
  writeRandomTinyVAE(unnamed, 'taesd-tiny', { seed: 3 });
  writeRandomTinyVAEFiles(decoderOnly, 'taesd-tiny', { seed: 4 });
  rmSync(join(root, 'only', 'taesd_encoder.safetensors'));
  writeRandomTinyVAE(taesd8, FOUR, { seed: 5 });
  writeRandomTinyVAE(unnamed8, FOUR, { seed: 6 });
  full = await StableDiffusion.load(BUILTIN_MODEL_DIR, { taesd });
  tinyPipe = await StableDiffusion.load(BUILTIN_MODEL_DIR, { vae: taesd });
});
after(async () => {
  await full.dispose();
  await tinyPipe.dispose();
  rmSync(root, { recursive: true, force: true });
});

/** The last latents a generation reported. */
async function generateWithLatents(pipe: StableDiffusion, o: Parameters<StableDiffusion['generate']>[0]): Promise<{ image: RgbImage; parameters: string; latents: Tensor }> {
  let latents: Tensor | undefined;
  const r = await pipe.generate(o, { onStep: (s) => void (s.latents && (latents = s.latents)) });
  return { image: r.images[0]!, parameters: r.images[0]!.parameters, latents: latents! };
}

const sameImage = (a: RgbImage, b: RgbImage): void => assert.deepEqual([a.width, a.height, Buffer.from(a.data).equals(Buffer.from(b.data))], [b.width, b.height, true]);

test('generate --vae taesd on the built-in model: a 32x32 image, decoded by the TAESD, said in the PNG', () => {
  const out = join(root, 'cli.png');
  const r = runCli(root, 'generate', '--prompt', 'a lighthouse at dusk', '--steps', '4', '--seed', '3', '--vae', taesd, '--out', out, '--json');
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { vaeDecoder: string; parameters: string };
  assert.equal(summary.vaeDecoder, 'taesd');
  assert.match(summary.parameters, /VAE Decoder: TAESD/);
  const png = readFileSync(out);
  const img = decodePngRgb(png, out);
  assert.deepEqual([img.width, img.height], [32, 32]);
  assert.match(readPngText(png).parameters!, /VAE Decoder: TAESD/);
  // A sane picture from random TAESD weights: every channel varies and is not all black or white.
  for (let c = 0; c < 3; c++) {
    const v = Array.from({ length: 32 * 32 }, (_, p) => img.data[p * 3 + c]!);
    assert.ok(Math.max(...v) - Math.min(...v) > 20, `channel ${c} barely varies`);
    const extremes = v.filter((x) => x === 0 || x === 255).length;
    assert.ok(extremes < v.length * 0.9, `channel ${c}: ${extremes} of ${v.length} pixels saturated`);
  }
});

test('a TAESD VAE decodes the U-Net latents as they are (scaling factor 1), as diffusers with vae=AutoencoderTiny', async () => {
  const { image, latents } = await generateWithLatents(tinyPipe, { prompt: 'a red boat', steps: 3, seed: 5, sampler: 'euler' });
  assert.ok(!(tinyPipe.vae instanceof VAE));
  const tiny = await loadTinyVAE(taesd);
  sameImage(image, toRgb(await tiny.decode(latents))[0]!);
  await tiny.dispose();
});

test('vaeDecoder switches the decoder per generation; the denoising is the same', async () => {
  const o = { prompt: 'a red boat', steps: 3, seed: 5, sampler: 'euler' as const };
  const a = await generateWithLatents(full, o);
  const b = await generateWithLatents(full, { ...o, vaeDecoder: 'taesd' });
  assert.deepEqual(b.latents.data, a.latents.data);
  const vae = full.vae as VAE;
  sameImage(a.image, toRgb(await vae.decode({ data: a.latents.data.map((v) => v / vae.config.scalingFactor), dims: a.latents.dims }))[0]!);
  sameImage(b.image, toRgb(await full.taesd!.decode(b.latents))[0]!);
  assert.doesNotMatch(a.parameters, /VAE Decoder/);
  assert.match(b.parameters, /VAE Decoder: TAESD/);
  assert.deepEqual(full.vaeMethods, ['full', 'taesd']);
  assert.deepEqual(tinyPipe.vaeMethods, ['taesd']);
});

test("TAESD encoding takes the encoder's output as the latents and draws nothing (diffusers' retrieve_latents)", async () => {
  const image = imagesToTensor([{ width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) % 256) }]);
  let draws = 0;
  const init = await encodeInitLatents(full.taesd!, image, (dims) => (draws++, randn(0, dims)), 2);
  assert.equal(draws, 0);
  const one = await full.taesd!.encode(image);
  assert.deepEqual(init.dims, [2, 4, 16, 16]);
  assert.deepEqual(init.data.subarray(0, one.data.length), one.data);
  assert.deepEqual(init.data.subarray(one.data.length), one.data);
});

test('inpainting with a TAESD encoder: kept latents are its output, noised with the first draw of the seed', async () => {
  const init: RgbImage = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 53) % 256) };
  // Repaint the left half only; blur 0 keeps the right half's latents out of the mask.
  const mask: RgbImage = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (Math.floor(i / 3) % 32 < 16 ? 255 : 0)) };
  const seed = 9;
  const steps: Tensor[] = [];
  const r = await full.generate(
    { prompt: 'a harbour', steps: 4, seed, sampler: 'euler', initImage: init, strength: 1, mask: { image: mask, blur: 0 }, vaeEncoder: 'taesd' },
    { onStep: (s) => void (s.latents && steps.push(s.latents)) },
  );
  assert.match(r.images[0]!.parameters, /VAE Encoder: TAESD/);
  assert.doesNotMatch(r.images[0]!.parameters, /VAE Decoder/);
  const kept = await full.taesd!.encode(imagesToTensor([init]));
  const scheduler = createScheduler('euler', full.schedulerConfig);
  scheduler.setTimesteps(4);
  const timesteps = img2imgTimesteps(scheduler, 4, 1);
  const noise = { data: new TorchGenerator(seed).randn(kept.dims), dims: kept.dims };
  const expected = [...timesteps.slice(1).map((t) => scheduler.addNoise(kept, noise, t)), kept];
  const outside = (t: Tensor): number[] => Array.from(t.data).filter((_, i) => i % 16 >= 10);
  steps.forEach((x, i) => assert.deepEqual(outside(x), outside(expected[i]!), `step ${i + 1}`));
});

test("a model folder whose vae/ is an AutoencoderTiny loads it as the model's VAE", async () => {
  const model = join(root, 'tiny-photo-taesd');
  cpSync(BUILTIN_MODEL_DIR, model, { recursive: true });
  rmSync(join(model, 'vae'), { recursive: true });
  cpSync(taesd, join(model, 'vae'), { recursive: true });
  const warnings: string[] = [];
  const pipe = await StableDiffusion.load(model, { onWarning: (m) => warnings.push(m) });
  assert.deepEqual([pipe.vae.config.scalingFactor, pipe.vaeMethods, warnings], [1, ['taesd'], []]);
  const r = await pipe.generate({ prompt: 'a boat', steps: 2, seed: 1 });
  assert.match(r.images[0]!.parameters, /VAE Decoder: TAESD/);
  await pipe.dispose();
});

test('hires fix with lanczos on a TAESD VAE decodes and encodes with it', async () => {
  const r = await tinyPipe.generate({ prompt: 'a lighthouse', steps: 2, seed: 1, hires: { scale: 2, steps: 2, denoise: 0.5, upscaler: 'lanczos' } });
  const img = r.images[0]!;
  assert.deepEqual([img.width, img.height], [64, 64]);
  assert.match(img.parameters, /VAE Decoder: TAESD, VAE Encoder: TAESD/);
});

test('a TAESD of the other family is refused, naming the one to use; a stated family overrides the name', async () => {
  await assert.rejects(StableDiffusion.load(BUILTIN_MODEL_DIR, { vae: taesdxl }), /--vae .*taesdxl is a TAESD for SDXL \(taesdxl\) but the model is SD 1\.x \/ 2\.x: use taesd \(taesd_decoder\.safetensors.*--taesd-family/);
  await assert.rejects(StableDiffusion.load(BUILTIN_MODEL_DIR, { taesd: taesdxl }), /--taesd .*TAESD for SDXL/);
  const sdxl = fixture('sdxl-tiny');
  await assert.rejects(StableDiffusion.load(sdxl, { vae: taesd8 }), /TAESD for SD 1\.x \/ 2\.x \(taesd\) but the model is SDXL: use taesdxl \(taesdxl_decoder\.safetensors/);
  const warnings: string[] = [];
  const pipe = await StableDiffusion.load(sdxl, { vae: unnamed8, onWarning: (m) => warnings.push(m) });
  assert.equal(pipe.vae.config.scalingFactor, 1);
  await pipe.dispose();
  assert.ok(warnings.some((w) => /its name does not say which family.*taken to be taesdxl/.test(w)), warnings.join('\n'));
  const stated = await StableDiffusion.load(sdxl, { vae: unnamed8, taesdFamily: 'sdxl', onWarning: (m) => warnings.push(`stated: ${m}`) });
  await stated.dispose();
  assert.ok(!warnings.some((w) => w.startsWith('stated: ')));
  await assert.rejects(StableDiffusion.load(sdxl, { vae: taesd8, taesdFamily: 'sd' }), /model is SDXL: use taesdxl/);
  // Right family, wrong grid: the SDXL test model's VAE has 8 pixels per latent, this TAESD 2.
  await assert.rejects(StableDiffusion.load(sdxl, { vae: unnamed, taesdFamily: 'sdxl' }), /4 latent channels at 1\/2 of the image size, the model's VAE 4 at 1\/8: it was made for another latent space/);
});

test('asking for a VAE the pipeline lacks fails before any work, naming what to load', async () => {
  const plain = await StableDiffusion.load(BUILTIN_MODEL_DIR);
  await assert.rejects(plain.generate({ prompt: 'x', steps: 1, vaeDecoder: 'taesd' }), /TAESD decoding needs a TAESD: load with \{ taesd: path \} \(--taesd FILE\|DIR\)/);
  await plain.dispose();
  await assert.rejects(tinyPipe.generate({ prompt: 'x', steps: 1, vaeDecoder: 'full' }), /the pipeline's VAE is a TAESD .*no full VAE for decoding/);
  const half = await StableDiffusion.load(BUILTIN_MODEL_DIR, { vae: decoderOnly });
  const init: RgbImage = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) };
  let steps = 0;
  await assert.rejects(half.generate({ prompt: 'x', steps: 2, initImage: init }, { onStep: () => void steps++ }), /holds only a TAESD decoder; encoding .* needs its encoder: put taesd_encoder\.safetensors/);
  assert.equal(steps, 0);
  assert.equal((await half.generate({ prompt: 'x', steps: 1 })).images.length, 1);
  await half.dispose();
});

test('tiled decoding works with a TAESD: conv-only, the tiles agree closely', async () => {
  const tiny = full.taesd!;
  const lat = { data: randn(2, [1, 4, 48, 48]), dims: [1, 4, 48, 48] };
  const whole = await tiny.decode(lat);
  const tiled = await decodeTiled(lat, 2, (t) => tiny.decode(t), { tile: 24, overlap: 8 });
  // Only the zero padding at tile borders differs (no normalisation or attention sees the whole
  // tile): measured 0.025 here, against 0.083 for the KL VAE's tiles in vae-tiling.test.ts.
  const rel = relL2(tiled.data, whole.data);
  assert.ok(rel < 0.04, `relative L2 ${rel}`);
  const W = 96;
  const maxJump = (d: Float32Array): number => {
    let m = 0;
    for (let y = 0; y < W; y++) for (let x = 1; x < W; x++) m = Math.max(m, Math.abs(d[y * W + x]! - d[y * W + x - 1]!));
    return m;
  };
  assert.ok(maxJump(tiled.data) <= maxJump(whole.data) * 1.1, 'no seam');
  // Through the pipeline: vaeTiling on gives the same picture size and runs the TAESD.
  const r = await tinyPipe.generate({ prompt: 'x', steps: 1, seed: 1, width: 32, height: 32, vaeTiling: true });
  assert.deepEqual([r.images[0]!.width, r.images[0]!.height], [32, 32]);
});

test('infotext: VAE Decoder / VAE Encoder are written as A1111 writes them and read back', () => {
  const base = { prompt: 'p', negativePrompt: '', steps: 2, sampler: 'euler' as const, karras: false, cfg: 7, seed: 1, width: 32, height: 32, model: 'm', clipSkip: 1, attention: { method: 'dense' as const }, attentionLevels: [0], latent: [16, 16] as const };
  const text = a1111Parameters({ ...base, vaeDecoder: 'taesd', vaeEncoder: 'taesd' });
  assert.match(text, /VAE Decoder: TAESD, VAE Encoder: TAESD, Version: todo-sd$/);
  assert.doesNotMatch(a1111Parameters({ ...base, vaeDecoder: 'full', vaeEncoder: 'full' }), /VAE/);
  const back = optionsFromParameters(parseParameters(text), [0]);
  assert.deepEqual([back.options.vaeDecoder, back.options.vaeEncoder, back.notApplied], ['taesd', 'taesd', []]);
  assert.equal(optionsFromParameters(parseParameters('p\nSteps: 2, Seed: 1, Size: 32x32, VAE Decoder: Full'), [0]).options.vaeDecoder, 'full');
  assert.throws(() => optionsFromParameters(parseParameters('p\nSteps: 2, Seed: 1, VAE Decoder: Approx'), [0]), /"VAE Decoder: Approx" is not one of Full, TAESD/);
});

test('generate --preview writes live previews: TAESD at full size, the cheap one per latent; --from-png needs a TAESD for "VAE Decoder: TAESD"', () => {
  const out = join(root, 'pv.png');
  let r = runCli(root, 'generate', '--prompt', 'a fox', '--steps', '3', '--seed', '1', '--taesd', taesd, '--preview', 'taesd', '--vae-decoder', 'taesd', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  let preview = decode(readFileSync(join(root, 'pv-preview.png')));
  assert.deepEqual([preview.width, preview.height], [32, 32]);
  const cheap = join(root, 'cheap.png');
  r = runCli(root, 'generate', '--prompt', 'a fox', '--steps', '2', '--seed', '1', '--preview', 'cheap', '--preview-path', cheap, '--out', join(root, 'pv2.png'));
  assert.equal(r.code, 0, r.stderr);
  preview = decode(readFileSync(cheap));
  assert.deepEqual([preview.width, preview.height], [16, 16]);
  r = runCli(root, 'generate', '--prompt', 'a fox', '--steps', '2', '--preview', 'taesd', '--out', join(root, 'pv3.png'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--preview taesd needs a TAESD: give --taesd FILE\|DIR/);
  // The PNG says it was decoded by TAESD: without one the note says what to give, with one it applies.
  r = runCli(root, 'generate', '--from-png', out, '--out', join(root, 'again.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /settings not applied: VAE Decoder \(TAESD: needs a TAESD: give --taesd FILE\|DIR to apply it\)/);
  r = runCli(root, 'generate', '--from-png', out, '--taesd', taesd, '--out', join(root, 'again2.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.ok(readFileSync(join(root, 'again2.png')).equals(readFileSync(out)), 'the same image again');
});
