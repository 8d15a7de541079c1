import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, createScheduler, optionsFromParameters, parseParameters, StableDiffusion, toRgb, TorchGenerator, UserError, type RgbImage, type SamplerName } from '../src/index.js';
import { upscaleLatents } from '../src/pipeline/hires.js';
import { encodeInitLatents, imagesToTensor } from '../src/pipeline/img2img.js';
import { strengthRun, type StrengthRequest } from '../src/pipeline/strength.js';
import type { Tensor } from '../src/tensor.js';

const config = JSON.parse(readFileSync(join(BUILTIN_MODEL_DIR, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;

/** The schedule's steps (positions), noisiest first: a timestep listed twice (Heun, PLMS's warm-up) is one position. */
function positions(sampler: SamplerName, steps: number): number[] {
  const s = createScheduler(sampler, config);
  s.setTimesteps(steps);
  return s.timesteps.filter((t, i) => i === 0 || t !== s.timesteps[i - 1]);
}

function run(sampler: SamplerName, rule: StrengthRequest['rule'], steps: number, strength: number, hires = false): ReturnType<typeof strengthRun> & { scheduleLength: number } {
  const s = createScheduler(sampler, config);
  const r = strengthRun(s, { sampler, rule, steps, strength, hires, numTrain: 1000 });
  return { ...r, scheduleLength: s.timesteps.length };
}

// A1111 v1.10 (sd_samplers_common.setup_img2img_steps), worked by hand for 10 steps at strength 0.35:
// t_enc = int(0.35 · 10) = 3; the init is noised to position 10 − 3 − 1 = 6.
test('A1111 img2img, k-diffusion samplers: sigmas[steps − t_enc − 1:], t_enc + 1 steps from the noise level', () => {
  const p = positions('euler', 10);
  assert.deepEqual(run('euler', 'a1111', 10, 0.35), { noiseAt: p[6], timesteps: p.slice(6), scheduleLength: 10 });
  // diffusers cuts ⌊10 · 0.35⌋ = 3 steps: one fewer, from one position later.
  assert.deepEqual(run('euler', 'diffusers', 10, 0.35).timesteps, p.slice(7));
  // Strength 1 is capped at 0.999: t_enc = 9, the whole schedule, as diffusers.
  assert.deepEqual(run('euler', 'a1111', 10, 1).timesteps, p);
  // Strength 0: t_enc = 0, one step on the tail (sigmas[9:] = [σ₉, 0]). diffusers' cut runs none, so A1111's rule decides.
  for (const rule of ['a1111', 'diffusers'] as const) assert.deepEqual(run('euler', rule, 10, 0), { noiseAt: p[9], timesteps: [p[9]], scheduleLength: 10 });
  // Heun lists each timestep after the first twice; the last step is one evaluation, as k-diffusion's last Heun step.
  const heun = run('heun', 'a1111', 4, 0);
  assert.deepEqual([heun.timesteps, heun.noiseAt], [[positions('heun', 4)[3]], positions('heun', 4)[3]]);
});

test("A1111 img2img, its own DDIM / PLMS loops: noised at position 6, run positions 7 and 8 (t_enc − 1 steps, ending on the last timestep's noise)", () => {
  for (const sampler of ['ddim', 'pndm'] as const) {
    const p = positions(sampler, 10);
    assert.equal(p.length, 10, sampler);
    const r = run(sampler, 'a1111', 10, 0.35);
    assert.equal(r.noiseAt, p[6], sampler);
    assert.deepEqual(r.timesteps, [p[7], p[8]], sampler);
    // t_enc ≤ 1 runs no step: strength 0 leaves the init noised to the last timestep (t = 1, A1111's timesteps[0]), 0.1 to the one before.
    assert.deepEqual([run(sampler, 'a1111', 10, 0).noiseAt, run(sampler, 'a1111', 10, 0).timesteps], [p[9], []]);
    assert.deepEqual([run(sampler, 'a1111', 10, 0.1).noiseAt, run(sampler, 'a1111', 10, 0.1).timesteps], [p[8], []]);
    assert.equal(p[9], 1);
  }
  // UniPC starts there too but runs to the end (t_enc steps); at strength 0 it runs none.
  const u = positions('unipc', 10);
  assert.deepEqual(run('unipc', 'a1111', 10, 0.35).timesteps, u.slice(7));
  assert.deepEqual(run('unipc', 'a1111', 10, 0), { noiseAt: u[9], timesteps: [], scheduleLength: 10 });
});

test('A1111 hires fix: exactly N steps at the end of an ⌊N / denoise⌋-step schedule; denoise 0 runs nothing and adds no noise', () => {
  // N = 4, denoise 0.3: int(4 / 0.3) = 13 steps, t_enc = 3, sigmas[13 − 4:].
  const r = run('euler', 'a1111', 4, 0.3, true);
  assert.equal(r.scheduleLength, 13);
  assert.deepEqual(r.timesteps, positions('euler', 13).slice(9));
  // Denoise 1 → int(4 / 0.999) = 4: the whole schedule.
  assert.deepEqual(run('euler', 'a1111', 4, 1, true).timesteps, positions('euler', 4));
  // The DDIM loop: positions 10 and 11 of 13 (N − 2 steps).
  assert.deepEqual(run('ddim', 'a1111', 4, 0.3, true).timesteps, positions('ddim', 13).slice(10, 12));
  for (const sampler of ['euler', 'dpmpp-2m-sde', 'ddim', 'pndm', 'unipc'] as const) {
    for (const rule of ['a1111', 'diffusers'] as const) {
      const zero = run(sampler, rule, 4, 0, true);
      assert.deepEqual([zero.noiseAt, zero.timesteps], [undefined, []], `${sampler} ${rule}`);
    }
  }
  // diffusers' rule on the hires pass cuts ⌊4 · 0.5⌋ = 2 of 4 steps.
  assert.deepEqual(run('euler', 'diffusers', 4, 0.5, true).timesteps, positions('euler', 4).slice(2));
  assert.throws(
    () => run('euler', 'a1111', 150, 0.1, true),
    (e: Error) => e instanceof UserError && /hires denoise 0\.1 with 150 steps needs a 1500-step schedule .* more than the model's 1000 timesteps/.test(e.message),
  );
});

let pipe: StableDiffusion;
let init: RgbImage;
before(async () => {
  pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
  init = (await pipe.generate({ prompt: 'a lighthouse', width: 32, height: 32, steps: 4, sampler: 'euler', seed: 11 })).images[0]!;
});
after(() => pipe.dispose());

const base = { prompt: 'a red barn', width: 32, height: 32, steps: 4, seed: 2 };

test('img2img at strength 0 with Euler is one step on the tail: the same picture as diffusers\' cut of one step (strength 1/steps)', async () => {
  const steps: number[] = [];
  const zero = await pipe.generate({ ...base, sampler: 'euler', initImage: init, strength: 0, strengthRule: 'a1111' }, { onStep: (s) => void (s.phase === 'denoise' && steps.push(s.step)) });
  assert.deepEqual(steps, [1]);
  const quarter = await pipe.generate({ ...base, sampler: 'euler', initImage: init, strength: 0.25, strengthRule: 'diffusers' });
  assert.deepEqual(zero.images[0]!.data, quarter.images[0]!.data);
  const fallback = await pipe.generate({ ...base, sampler: 'euler', initImage: init, strength: 0 });
  assert.deepEqual(fallback.images[0]!.data, zero.images[0]!.data, "diffusers' rule falls back to A1111's at strength 0");
  assert.match(fallback.images[0]!.parameters, /Denoising strength: 0, Strength rule: diffusers, Version/);
  assert.match(zero.images[0]!.parameters, /Denoising strength: 0, Version/);
});

test('img2img at strength 0 with DDIM runs no U-Net step: the init latents noised to t = 1, decoded', async () => {
  const seen: string[] = [];
  const r = await pipe.generate({ ...base, sampler: 'ddim', initImage: init, strength: 0, strengthRule: 'a1111' }, { onStep: (s) => void seen.push(s.phase) });
  assert.deepEqual(seen, ['decode']);
  assert.equal(r.settings.passes[0]!.steps, 0);
  // The same by hand: posterior sample and noise from the seed's generator, DDIM's add_noise at t = 1, the VAE decoder.
  const generator = new TorchGenerator(base.seed);
  const randn = (dims: readonly number[]): Float32Array => generator.randn(dims);
  const latents = await encodeInitLatents(pipe.vae, imagesToTensor([init]), randn, 1);
  const scheduler = createScheduler('ddim', pipe.schedulerConfig);
  scheduler.setTimesteps(4);
  const noised = scheduler.addNoise(latents, { data: randn(latents.dims), dims: latents.dims }, 1);
  const sf = pipe.vae.config.scalingFactor;
  const decoded = await pipe.vae.decode({ data: noised.data.map((v) => v / sf), dims: noised.dims });
  assert.deepEqual(r.images[0]!.data, toRgb(decoded)[0]!.data);
});

test('hires fix at denoise 0: the upscaled first pass decoded as it is, for every sampler', async () => {
  for (const sampler of ['euler', 'ddim', 'unipc'] as const) {
    let first: Tensor | undefined;
    const phases = new Set<string>();
    const r = await pipe.generate(
      { ...base, sampler, hires: { scale: 2, denoise: 0, upscaler: 'latent' }, strengthRule: 'a1111' },
      { onStep: (s) => void (phases.add(s.phase), s.pass === 1 && s.latents && (first = s.latents)) },
    );
    assert.deepEqual([...phases], ['denoise', 'decode'], sampler);
    const up = upscaleLatents(first!, 32, 32, 'bilinear');
    const sf = pipe.vae.config.scalingFactor;
    const decoded = await pipe.vae.decode({ data: up.data.map((v) => v / sf), dims: up.dims });
    assert.deepEqual(r.images[0]!.data, toRgb(decoded)[0]!.data, sampler);
    assert.deepEqual(r.settings.passes.map((p) => p.steps), [4, 0]);
  }
});

test("A1111's hires rule runs the hires steps it is asked for (Euler: all N; DDIM: N − 2), and the PNG says which rule ran", async () => {
  const count = async (sampler: SamplerName, strengthRule: 'a1111' | 'diffusers'): Promise<number> => {
    let n = 0;
    await pipe.generate({ ...base, sampler, strengthRule, hires: { scale: 1.5, steps: 4, denoise: 0.5, upscaler: 'latent' } }, { onStep: (s) => void (s.phase === 'hires' && n++) });
    return n;
  };
  assert.equal(await count('euler', 'a1111'), 4);
  assert.equal(await count('ddim', 'a1111'), 2);
  assert.equal(await count('euler', 'diffusers'), 2);
  const made = await pipe.generate({ ...base, sampler: 'euler', hires: { scale: 1.5, steps: 4, denoise: 0.5, upscaler: 'latent' } });
  const back = optionsFromParameters(parseParameters(made.images[0]!.parameters), [0]);
  assert.equal(back.options.strengthRule, 'diffusers');
  assert.equal(optionsFromParameters(parseParameters('x\nSteps: 4, Seed: 1, Size: 32x32, Denoising strength: 0.5, Hires upscale: 2'), [0]).options.strengthRule, 'a1111', "A1111's own images: its rule");
  assert.throws(() => optionsFromParameters(parseParameters('x\nSteps: 4, Seed: 1, Denoising strength: 0.5, Hires upscale: 2, Strength rule: k'), [0]), /"Strength rule: k" is not one of diffusers, a1111/);
});
