import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BUILTIN_MODEL_DIR, createScheduler, sessionStarts, StableDiffusion, type Tensor, type UNet } from '../src/index.js';
import { relL2 } from './helpers.js';
import { skipsUncond, timestepSigma } from '../src/pipeline/guidance.js';
import { NoisePredictor } from '../src/pipeline/noise-predictor.js';

/** A1111 v1.10's CFGDenoiser condition, transcribed: `(self.step % 2 or s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond`. */
const a1111Skips = (step: number, sigma: number, sMin: number, all: boolean): boolean => Boolean((step % 2 || all) && sMin > 0 && sigma < sMin);

test("NGMS skips the negative half on A1111's calls: odd calls below the sigma, every call with 'all steps'", () => {
  for (const all of [false, true]) {
    for (const sMin of [0, 0.5, 1, 4]) {
      for (let step = 0; step < 6; step++) {
        for (const sigma of [0.1, 0.5, 0.99, 1, 3, 14.6]) {
          assert.equal(skipsUncond(step, sigma, { sigma: sMin, allSteps: all }), a1111Skips(step, sigma, sMin, all), `step ${step}, sigma ${sigma}, s_min_uncond ${sMin}, all ${all}`);
        }
      }
    }
  }
});

test("A1111's sigma of a timestep: sqrt((1 − ᾱ)/ᾱ) at whole timesteps, log-linear between them (k-diffusion's t_to_sigma)", () => {
  const config = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000 };
  // From first principles, in float64: betas = linspace(√β0, √β1)², ᾱ = cumprod(1 − β).
  const sigmas: number[] = [];
  let ac = 1;
  for (let i = 0; i < 1000; i++) {
    const b = (Math.sqrt(0.00085) + ((Math.sqrt(0.012) - Math.sqrt(0.00085)) * i) / 999) ** 2;
    ac *= 1 - b;
    sigmas.push(Math.sqrt((1 - ac) / ac));
  }
  const sigma = timestepSigma(config);
  // The schedule is float32, as in diffusers and A1111 (1 − ᾱ near t = 0 keeps few digits).
  for (const t of [0, 1, 250, 500, 999]) assert.ok(Math.abs(sigma(t) / sigmas[t]! - 1) < 1e-4, `t ${t}: ${sigma(t)} vs ${sigmas[t]}`);
  const mid = Math.exp(0.75 * Math.log(sigmas[500]!) + 0.25 * Math.log(sigmas[501]!));
  assert.ok(Math.abs(sigma(500.25) / mid - 1) < 1e-6);
  assert.ok(sigma(999) > 14 && sigma(999) < 15, 'SD 1.5 sigma_max ≈ 14.6');
});

/** A stand-in U-Net: every output row holds its text row's first value (1 for the negative prompt, 3 for the prompt), and it records its batch sizes. */
function stubUNet(): { unet: UNet; batches: number[] } {
  const batches: number[] = [];
  const forward = async (sample: Tensor, _t: number, text: Tensor): Promise<Tensor> => {
    const b = sample.dims[0]!;
    batches.push(b);
    const per = sample.data.length / b;
    const textPer = text.data.length / text.dims[0]!;
    const data = new Float32Array(sample.data.length);
    for (let r = 0; r < b; r++) data.fill(text.data[r * textPer]!, r * per, (r + 1) * per);
    return { data, dims: sample.dims };
  };
  return { unet: { forward, config: { timeCondProjDim: null } } as unknown as UNet, batches };
}

test('the combined prediction: uncond + cfg · (cond − uncond) on guided calls; the prompt alone, at batch B, on skipped ones', async () => {
  const ts = [900, 700, 500, 300, 100, 50];
  const x = { data: new Float32Array(2 * 4 * 2 * 2), dims: [2, 4, 2, 2] };
  const text = { data: Float32Array.from({ length: 4 * 3 }, (_, i) => (i < 6 ? 1 : 3)), dims: [4, 3, 1] };
  for (const [all, skipped] of [[false, [3, 5]], [true, [3, 4, 5]]] as const) {
    const { unet, batches } = stubUNet();
    // sigma = t / 100: below 4 from the fourth call on.
    const p = new NoisePredictor({ unet, cfg: 7, guided: true, ngms: { sigma: 4, allSteps: all }, sigmaOf: (t) => t / 100 });
    for (const [i, t] of ts.entries()) {
      const eps = await p.predict(i, x, t, { encoderHiddenStates: text }, true);
      assert.deepEqual(eps.dims, x.dims);
      const want = (skipped as readonly number[]).includes(i) ? 3 : 1 + 7 * (3 - 1);
      assert.ok(eps.data.every((v) => v === want), `call ${i}: ${eps.data[0]} vs ${want}`);
    }
    assert.deepEqual(batches, ts.map((_, i) => ((skipped as readonly number[]).includes(i) ? 2 : 4)));
    assert.deepEqual(p.evaluations, { full: 6, shallow: 0, promptOnly: skipped.length });
    // Split guidance: the same predictions, every call at batch B (negative half first).
    const split = stubUNet();
    const q = new NoisePredictor({ unet: split.unet, cfg: 7, guided: true, ngms: { sigma: 4, allSteps: all }, sigmaOf: (t) => t / 100, splitGuidance: true });
    for (const [i, t] of ts.entries()) {
      const eps = await q.predict(i, x, t, { encoderHiddenStates: text }, true);
      const want = (skipped as readonly number[]).includes(i) ? 3 : 1 + 7 * (3 - 1);
      assert.ok(eps.data.every((v) => v === want), `split, call ${i}: ${eps.data[0]} vs ${want}`);
    }
    assert.deepEqual(split.batches, ts.flatMap((_, i) => ((skipped as readonly number[]).includes(i) ? [2] : [2, 2])));
    assert.deepEqual(q.evaluations, p.evaluations);
  }
});

let pipe: StableDiffusion;
before(async () => {
  pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
});
after(() => pipe.dispose());

/** Batch sizes of the U-Net calls during `run`. */
async function unetBatches<T>(run: () => Promise<T>): Promise<{ batches: number[]; result: T }> {
  const batches: number[] = [];
  const forward = pipe.unet.forward.bind(pipe.unet);
  pipe.unet.forward = (sample, ...rest) => {
    batches.push(sample.dims[0]!);
    return forward(sample, ...rest);
  };
  try {
    return { batches, result: await run() };
  } finally {
    pipe.unet.forward = forward;
  }
}

test('NGMS in the pipeline: the skipped calls run the prompt alone, every call at batch B (guided ones as two calls, one U-Net session); cfg ≤ 1 never runs the negative half', async () => {
  const base = { prompt: 'a red barn', width: 32, height: 32, steps: 8, seed: 4, sampler: 'ddim' as const };
  const s = createScheduler('ddim', pipe.schedulerConfig);
  s.setTimesteps(8);
  const sigma = timestepSigma(pipe.schedulerConfig);
  const sMin = sigma(s.timesteps[4]!) + 1e-3;
  const skips = s.timesteps.map((t, i) => a1111Skips(i, sigma(t), sMin, false));
  assert.ok(skips.includes(true) && skips.includes(false), 'some calls skip, some do not');
  const starts = (): number => sessionStarts().unet?.count ?? 0;
  const before = starts();
  const ngms = await unetBatches(() => pipe.generate({ ...base, width: 40, cfg: 7, sMinUncond: sMin }));
  assert.equal(starts() - before, 1, 'one U-Net session for both kinds of call');
  assert.deepEqual(ngms.batches, skips.flatMap((skip) => (skip ? [1] : [1, 1])));
  assert.deepEqual(ngms.result.settings.passes[0]!.evaluations, { full: 8, shallow: 0, promptOnly: skips.filter(Boolean).length });
  // Split in two, a guided call predicts what the batch of both halves does.
  const finalLatents = async (sMinUncond: number): Promise<Float32Array> => {
    let last: Float32Array | undefined;
    await pipe.generate({ ...base, cfg: 7, sMinUncond }, { onStep: (st) => void (st.latents && (last = st.latents.data.slice())) });
    return last!;
  };
  const [never, plain] = [await finalLatents(1e-9), await finalLatents(0)];
  assert.ok(relL2(never, plain) < 1e-5, `split guidance vs one batch: ${relL2(never, plain)}`);
  assert.match(ngms.result.images[0]!.parameters, new RegExp(`NGMS: ${sMin}, Version`));
  const dense = await pipe.generate({ ...base, cfg: 7 });
  assert.notDeepEqual(ngms.result.images[0]!.data, dense.images[0]!.data);
  const all = await unetBatches(() => pipe.generate({ ...base, cfg: 7, sMinUncond: sMin, sMinUncondAll: true }));
  assert.deepEqual(all.batches, s.timesteps.flatMap((t) => (sigma(t) < sMin ? [1] : [1, 1])));
  assert.match(all.result.images[0]!.parameters, /NGMS all steps: True/);
  for (const cfg of [1, 0.5]) {
    const unguided = await unetBatches(() => pipe.generate({ ...base, cfg, sMinUncond: sMin }));
    assert.deepEqual(unguided.batches, Array(8).fill(1), `cfg ${cfg}: one batch of B per step`);
    assert.equal(unguided.result.settings.passes[0]!.evaluations.promptOnly, 0);
  }
  await assert.rejects(pipe.generate({ ...base, sMinUncond: -1 }), /sMinUncond \(NGMS\) must be a sigma >= 0/);
});

test('NGMS with DeepCache: whole steps keep both halves, the shallow steps skip the negative half by the rule', async () => {
  const s = createScheduler('ddim', pipe.schedulerConfig);
  s.setTimesteps(8);
  const sigma = timestepSigma(pipe.schedulerConfig);
  const sMin = sigma(s.timesteps[2]!) + 1e-3;
  const r = await pipe.generate({ prompt: 'a red barn', width: 32, height: 32, steps: 8, seed: 4, sampler: 'ddim', cfg: 7, sMinUncond: sMin, deepcache: { interval: 2 } });
  // Whole at calls 0, 2, 4, 6; shallow at 1, 3, 5, 7, each odd and (from call 3 on) below the sigma.
  const promptOnly = [1, 3, 5, 7].filter((i) => a1111Skips(i, sigma(s.timesteps[i]!), sMin, false)).length;
  assert.equal(promptOnly, 3);
  assert.deepEqual(r.settings.passes[0]!.evaluations, { full: 4, shallow: 4, promptOnly });
});
