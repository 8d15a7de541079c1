import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createScheduler, StableDiffusion, TorchGenerator, VAE, type SamplerName } from '../src/index.js';
import { decodePngRgb } from '../src/io/png.js';
import { encodeImage, imagesToTensor, img2imgTimesteps, noiseLatents } from '../src/pipeline/img2img.js';
import { caseFlags, comparePngs, readCases, type ReferenceCase } from './conformance-images.js';
import { fixture, readTensor, relL2, runCli, sharedDir } from './helpers.js';

// diffusers' StableDiffusionImg2ImgPipeline on tiny-photo: whole images through the CLI, the
// intermediate tensors (preprocessing, posterior, draws, noised latents, every step) in-process.
interface Img2ImgCase extends ReferenceCase {
  init_image: string;
  strength: number;
  steps_run: number;
  first_timestep: number;
}

const root = mkdtempSync(join(tmpdir(), 'todo-sd-img2img-'));
const model = join(sharedDir, 'models', 'tiny-photo');
const cases = readCases<Img2ImgCase>(fixture('img2img', 'cases.json'));
const trace = fixture('img2img', 'trace.safetensors');
let pipe: StableDiffusion;

before(async () => {
  pipe = await StableDiffusion.load(model);
});
after(() => pipe.dispose());

test('img2img has its cases', () => assert.equal(cases.length, 8));

for (const c of cases) {
  test(`img2img ${c.name} (CLI): max |diff| <= 3, PSNR >= 40 dB`, () => {
    const out = join(root, c.png);
    const flags = [...caseFlags(c.args), '--init-image', fixture('img2img', c.init_image), '--strength', String(c.strength)];
    const r = runCli(root, 'generate', '--model', model, ...flags, '--out', out, '--json');
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { strength: number; passes: { steps: number }[]; parameters: string };
    assert.equal(summary.passes[0]!.steps, c.steps_run);
    assert.match(summary.parameters, new RegExp(`Denoising strength: ${c.strength}`));
    const { maxDiff, psnr } = comparePngs(out, fixture('img2img', c.png));
    assert.ok(maxDiff <= 3, `max |diff| ${maxDiff}`);
    assert.ok(psnr >= 40, `PSNR ${psnr.toFixed(1)} dB`);
  });
}

for (const c of cases.filter((_, i) => i === 0 || i === 6)) {
  test(`img2img ${c.name}: preprocessing, posterior, draws and every step to 1e-4`, async () => {
    const a = c.args;
    const t = (what: string): { data: Float32Array; dims: readonly number[] } => readTensor(trace, `${c.name}.${what}`);
    const init = decodePngRgb(readFileSync(fixture('img2img', c.init_image)), c.init_image);
    const image = imagesToTensor([init]);
    assert.ok(relL2(image.data, t('image').data) < 1e-6);

    const generator = new TorchGenerator(a.seed);
    const randn = (dims: readonly number[]): Float32Array => generator.randn(dims);
    const scheduler = createScheduler(a.sampler, pipe.schedulerConfig, { randn });
    scheduler.setTimesteps(a.steps);
    const timesteps = img2imgTimesteps(scheduler, a.steps, c.strength);
    assert.deepEqual(timesteps, Array.from(t('timesteps').data));
    assert.equal(timesteps[0], c.first_timestep);

    assert.ok(pipe.vae instanceof VAE);
    const encoded = await encodeImage(pipe.vae, image, randn, 1);
    assert.ok(relL2(encoded.mean.data, t('posterior_mean').data) < 1e-4);
    assert.ok(relL2(encoded.std.data, t('posterior_std').data) < 1e-4);
    assert.deepEqual(encoded.eps, t('posterior_eps').data);
    assert.ok(relL2(encoded.latents.data, t('init_latents').data) < 1e-4);
    const { noise, latents } = noiseLatents(scheduler, encoded.latents, timesteps, randn);
    assert.deepEqual(noise.data, t('noise').data);

    const steps = t('latents');
    const n = latents.data.length;
    assert.ok(relL2(latents.data, steps.data.subarray(0, n)) < 1e-4, 'noised init latents');
    const seen: Float32Array[] = [];
    const result = await pipe.generate(
      { prompt: a.prompt, negativePrompt: a['negative-prompt'], steps: a.steps, sampler: a.sampler as SamplerName, cfg: a.cfg, seed: a.seed, initImage: init, strength: c.strength },
      { onStep: (s) => void (s.latents && seen.push(s.latents.data)) },
    );
    assert.equal(seen.length, c.steps_run);
    seen.forEach((x, i) => assert.ok(relL2(x, steps.data.subarray((i + 1) * n, (i + 2) * n)) < 1e-4, `step ${i + 1}`));
    assert.deepEqual([result.images[0]!.width, result.images[0]!.height], [init.width, init.height]);
  });
}

test('PNDM (PLMS) runs one step more than steps × strength, as diffusers', async () => {
  const init = decodePngRgb(readFileSync(fixture('img2img', 'init-32.png')), 'init-32.png');
  const seen: number[] = [];
  await pipe.generate({ prompt: 'a lighthouse', steps: 10, sampler: 'pndm', seed: 1, initImage: init, strength: 0.5 }, { onStep: (s) => void (s.phase === 'denoise' && seen.push(s.timestep)) });
  // The schedule is 901, 801, 801, 701, …, 1 (PLMS repeats a timestep); t_start = 5 keeps six of them.
  assert.deepEqual(seen, [501, 401, 301, 201, 101, 1]);
});

test('an init image of another size is resized with Lanczos to the asked size; without a size, rounded down to 8', async () => {
  const init = decodePngRgb(readFileSync(fixture('img2img', 'init-64.png')), 'init-64.png');
  const resized = await pipe.generate({ prompt: 'a lighthouse', steps: 2, sampler: 'ddim', seed: 1, initImage: init, strength: 0.5, width: 32, height: 40 });
  assert.deepEqual([resized.images[0]!.width, resized.images[0]!.height], [32, 40]);
  const odd = { width: 37, height: 30, data: init.data.subarray(0, 37 * 30 * 3) };
  const own = await pipe.generate({ prompt: 'a lighthouse', steps: 2, sampler: 'ddim', seed: 1, initImage: odd, strength: 0.5 });
  assert.deepEqual([own.images[0]!.width, own.images[0]!.height], [32, 24]);
});

test('strength outside (0, 1], a strength without an image, latents with an image: clear errors', async () => {
  const init = decodePngRgb(readFileSync(fixture('img2img', 'init-32.png')), 'init-32.png');
  for (const strength of [0, -0.5, 1.5, Number.NaN]) {
    await assert.rejects(pipe.generate({ prompt: 'x', steps: 2, initImage: init, strength }), /strength must be a number in \(0, 1\]/);
  }
  await assert.rejects(pipe.generate({ prompt: 'x', steps: 2, strength: 0.5 }), /strength applies to image-to-image: give an init image/);
  await assert.rejects(pipe.generate({ prompt: 'x', steps: 4, initImage: init, strength: 0.1 }), /runs no denoising step/);
  await assert.rejects(
    pipe.generate({ prompt: 'x', steps: 2, initImage: init, latents: { data: new Float32Array(4 * 16 * 16), dims: [1, 4, 16, 16] } }),
    /initial latents and an init image exclude each other/,
  );
});
