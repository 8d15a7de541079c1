/**
 * Few-step sampling end to end: lcm and tcd on the built-in model (an image, the same per seed,
 * the random draws in diffusers' order: the initial latents, then each step's noise from the same
 * generator), the strength-shortened LCM schedule of image-to-image, a guidance-distilled U-Net
 * (time_cond_proj_dim: one pass per step, the guidance embedding as its extra input, checked by an
 * exact identity), and the settings' way into the infotext and back.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BUILTIN_MODEL_DIR, loadUNet, optionsFromParameters, parseParameters, StableDiffusion, writeRandomModel, type GenerateOptions, type StepInfo } from '../src/index.js';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { readPngText } from '../src/io/png.js';
import type { UNetForwardOptions } from '../src/models/unet.js';
import { guidanceScaleEmbedding } from '../src/pipeline/guidance-embedding.js';
import { TorchGenerator } from '../src/random/torch-randn.js';
import { createScheduler } from '../src/scheduler/index.js';
import type { Tensor } from '../src/tensor.js';
import { relL2, runCli } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-fewstep-'));
after(() => rmSync(root, { recursive: true, force: true }));
const lcmModel = join(root, 'tiny-lcm');
writeRandomModel(lcmModel, 'tiny-lcm', { seed: 5 });

interface Call {
  sample: Tensor;
  t: number;
  out: Tensor;
  opts: UNetForwardOptions;
}

/** Runs a generation with the U-Net's calls recorded, and the latents after each step. */
async function recorded(pipe: StableDiffusion, o: GenerateOptions): Promise<{ calls: Call[]; steps: Tensor[]; image: Uint8Array; parameters: string }> {
  const calls: Call[] = [];
  const unet = pipe.unet;
  const forward = unet.forward.bind(unet);
  unet.forward = async (sample, t, text, opts = {}) => {
    const out = await forward(sample, t, text, opts);
    calls.push({ sample: { data: sample.data.slice(), dims: sample.dims }, t, out, opts });
    return out;
  };
  const steps: Tensor[] = [];
  try {
    const r = await pipe.generate(o, { onStep: (s: StepInfo) => s.latents && s.phase === 'denoise' && steps.push(s.latents) });
    return { calls, steps, image: r.images[0]!.data, parameters: r.images[0]!.parameters };
  } finally {
    unet.forward = forward;
  }
}

/**
 * The denoising loop replayed from the recorded U-Net outputs with diffusers' draws: the initial
 * latents from the seed's generator, then each step's noise from the same generator. Checks the
 * U-Net saw these latents and returns the latents after each step.
 */
function replay(calls: Call[], o: { sampler: 'lcm' | 'tcd'; seed: number; steps: number; cfg: number; eta?: number }, dims: number[], config: object): Tensor[] {
  const generator = new TorchGenerator(o.seed);
  let x: Tensor = { data: generator.randn(dims), dims };
  const s = createScheduler(o.sampler, config, { randn: (d) => generator.randn(d), ...(o.eta !== undefined && { eta: o.eta }) });
  s.setTimesteps(o.steps);
  assert.deepEqual(calls.map((c) => c.t), s.timesteps);
  const n = x.data.length;
  return calls.map((c) => {
    const guided = c.out.data.length === 2 * n;
    assert.ok(relL2(c.sample.data.subarray(0, n), x.data) < 1e-6, `U-Net input at t=${c.t}`);
    const u = c.out.data.subarray(0, n);
    const eps = guided ? u.map((v, k) => v + o.cfg * (c.out.data[n + k]! - v)) : u;
    x = s.step({ data: eps, dims }, c.t, x);
    return x;
  });
}

describe('lcm and tcd on the built-in model', () => {
  const base = { prompt: 'a lighthouse at dusk', width: 32, height: 32, steps: 4 };

  it('4 steps: an image, the same for the same seed, draws in diffusers order (lcm at cfg 1, tcd guided at cfg 1.5)', async () => {
    const pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
    try {
      for (const o of [
        { sampler: 'lcm', seed: 7, cfg: 1, steps: 4 },
        { sampler: 'tcd', seed: 8, cfg: 1.5, steps: 4, eta: 0.6 },
      ] as const) {
        const run = await recorded(pipe, { ...base, ...o });
        assert.equal(run.calls.length, 4);
        assert.equal(run.calls[0]!.sample.dims[0], o.cfg > 1 ? 2 : 1);
        const side = 32 / pipe.vae.config.scale;
        const want = replay(run.calls, o, [1, pipe.unet.config.inChannels, side, side], pipe.schedulerConfig);
        run.steps.forEach((x, i) => assert.ok(relL2(x.data, want[i]!.data) < 1e-6, `${o.sampler} latents after step ${i}`));
        assert.ok(run.image.some((v) => v !== run.image[0]), 'a picture, not a flat fill');
        const again = await pipe.generate({ ...base, ...o });
        assert.deepEqual(again.images[0]!.data, run.image);
        const other = await pipe.generate({ ...base, ...o, seed: o.seed + 1 });
        assert.notDeepEqual(other.images[0]!.data, run.image);
      }
    } finally {
      await pipe.dispose();
    }
  });

  it('img2img: lcm takes strength into its schedule and runs every step; the infotext reads back', async () => {
    const pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
    try {
      const init = (await pipe.generate({ ...base, sampler: 'euler', seed: 1 })).images[0]!;
      const steps: StepInfo[] = [];
      const r = await pipe.generate({ ...base, sampler: 'LCM', cfg: 1, seed: 3, initImage: init, strength: 0.5 }, { onStep: (s) => steps.push(s) });
      assert.deepEqual(steps.filter((s) => s.phase === 'denoise').map((s) => s.timestep), [499, 379, 259, 139]);
      assert.deepEqual(r.settings.passes.map((p) => p.steps), [4]);
      await assert.rejects(pipe.generate({ ...base, steps: 8, sampler: 'lcm', initImage: init, strength: 0.1 }), /strength 0.1 keeps 5 timesteps .* use at most 5 steps or a strength of at least 0.16/);
      const parsed = optionsFromParameters(parseParameters(r.images[0]!.parameters), [0]);
      assert.equal(parsed.options.sampler, 'lcm');
      assert.match(r.images[0]!.parameters, /Steps: 4, Sampler: LCM, CFG scale: 1, Seed: 3, .*Denoising strength: 0.5/);
    } finally {
      await pipe.dispose();
    }
  });

  it('infotext: Sampler TCD with its Eta, Schedule type for a spacing; both read back; misfits are errors', async () => {
    const pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
    try {
      const tcd = await pipe.generate({ ...base, sampler: 'tcd', eta: 0.2, cfg: 1, seed: 2 });
      assert.match(tcd.images[0]!.parameters, /Sampler: TCD, Eta: 0.2, CFG scale: 1,/);
      assert.deepEqual([tcd.settings.sampler, tcd.settings.eta], ['tcd', 0.2]);
      const back = optionsFromParameters(parseParameters(tcd.images[0]!.parameters), [0]);
      assert.deepEqual([back.options.sampler, back.options.eta, back.notApplied], ['tcd', 0.2, []]);
      assert.equal((await pipe.generate({ ...base, sampler: 'tcd', seed: 2, cfg: 1 })).settings.eta, 0.3);

      const steps: StepInfo[] = [];
      const euler = await pipe.generate({ ...base, sampler: 'Euler', timestepSpacing: 'trailing', seed: 2 }, { onStep: (s) => steps.push(s) });
      assert.deepEqual(steps.filter((s) => s.phase === 'denoise').map((s) => s.timestep), [999, 749, 499, 249]);
      assert.match(euler.images[0]!.parameters, /Sampler: Euler, Schedule type: SGM Uniform, CFG scale/);
      const again = optionsFromParameters(parseParameters(euler.images[0]!.parameters), [0]);
      assert.deepEqual([again.options.timestepSpacing, again.notApplied], ['trailing', []]);
      // A1111's own PNG: SGM Uniform on an LCM image is not ours to apply; Exponential is not offered.
      const a1111 = optionsFromParameters(parseParameters('x\nSteps: 4, Sampler: LCM, Schedule type: SGM Uniform, CFG scale: 1.5, Seed: 1, Size: 32x32, Eta: 0.4'), [0]);
      assert.equal(a1111.options.timestepSpacing, undefined);
      assert.deepEqual(a1111.notApplied, ['Schedule type ("SGM Uniform" is not applied (the lcm sampler has its own schedule): the sampler\'s schedule used)', 'Eta']);

      await assert.rejects(pipe.generate({ ...base, sampler: 'lcm', timestepSpacing: 'trailing' }), /timestep spacing does not apply to the lcm sampler/);
      await assert.rejects(pipe.generate({ ...base, sampler: 'euler-a', eta: 0.3 }), /eta \(TCD's gamma\) applies to the tcd sampler only/);
      await assert.rejects(pipe.generate({ ...base, sampler: 'lcm', steps: 60 }), /60 steps exceed original_inference_steps 50/);
    } finally {
      await pipe.dispose();
    }
  });
});

describe('a guidance-distilled U-Net (time_cond_proj_dim)', () => {
  it("the guidance embedding is diffusers' get_guidance_scale_embedding: sines then cosines of w·1000 at VDM frequencies", () => {
    const e = guidanceScaleEmbedding(0.5, 16, 2);
    assert.deepEqual(e.dims, [2, 16]);
    const want = Array.from({ length: 16 }, (_, j) => {
      const i = j % 8;
      const arg = 500 * Math.exp((-i * Math.log(10000)) / 7);
      return j < 8 ? Math.sin(arg) : Math.cos(arg);
    });
    assert.ok(relL2(e.data.subarray(16), want) < 1e-5 && relL2(e.data.subarray(0, 16), want) < 1e-5);
  });

  it('cond_proj adds to the timestep embedding: equal to the plain U-Net with the term folded into linear_1.bias', async () => {
    // linear_1(p + W·c) = L1·p + (b1 + L1·W·c): the same U-Net without cond_proj and a moved bias.
    const plain = join(root, 'folded');
    mkdirSync(join(plain, 'unet'), { recursive: true });
    const config = JSON.parse(readFileSync(join(lcmModel, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>;
    delete config.time_cond_proj_dim;
    writeFileSync(join(plain, 'unet', 'config.json'), JSON.stringify(config));
    const file = SafetensorsFile.open(join(lcmModel, 'unet', 'diffusion_pytorch_model.safetensors'));
    const cond = guidanceScaleEmbedding(3, 256, 1);
    const w = file.readFloat32('time_embedding.cond_proj.weight'); // [32, 256]
    const l1 = file.readFloat32('time_embedding.linear_1.weight'); // [128, 32]
    const wc = Array.from({ length: 32 }, (_, r) => w.subarray(r * 256, (r + 1) * 256).reduce((a, v, k) => a + v * cond.data[k]!, 0));
    const bias = file.readFloat32('time_embedding.linear_1.bias').map((b, r) => b + wc.reduce((a, v, k) => a + l1[r * 32 + k]! * v, 0));
    const tensors = Object.fromEntries(
      [...file.tensors.keys()]
        .filter((k) => k !== 'time_embedding.cond_proj.weight')
        .map((k) => [k, { dtype: 'F32' as const, shape: file.info(k).shape, data: k === 'time_embedding.linear_1.bias' ? bias : file.readFloat32(k) }]),
    );
    writeSafetensors(join(plain, 'unet', 'diffusion_pytorch_model.safetensors'), tensors);

    const [distilled, folded] = await Promise.all([loadUNet(lcmModel), loadUNet(plain)]);
    const sample = { data: Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => Math.sin(i * 0.7)), dims: [1, 4, 8, 8] };
    const text = { data: Float32Array.from({ length: 77 * 32 }, (_, i) => Math.cos(i * 0.3)), dims: [1, 77, 32] };
    const a = await distilled.forward(sample, 499, text, { timestepCond: cond });
    const b = await folded.forward(sample, 499, text);
    assert.ok(relL2(a.data, b.data) < 1e-5, `relative error ${relL2(a.data, b.data)}`);
    const zero = await distilled.forward(sample, 499, text, { timestepCond: guidanceScaleEmbedding(0, 256, 1) });
    assert.ok(relL2(zero.data, a.data) > 1e-4, 'the embedding changes the output');
    await assert.rejects(distilled.forward(sample, 499, text), /guidance-distilled \(time_cond_proj_dim 256, an LCM\): pass \{ timestepCond \} \[1, 256\]/);
    await Promise.all([distilled.dispose(), folded.dispose()]);
  });

  it('the pipeline runs one pass per step whatever the cfg, with the embedding of cfg − 1; the negative prompt is unused', async () => {
    const pipe = await StableDiffusion.load(lcmModel);
    const warnings: string[] = [];
    try {
      assert.equal(pipe.defaultSampler, 'lcm');
      const calls: UNetForwardOptions[] = [];
      const forward = pipe.unet.forward.bind(pipe.unet);
      pipe.unet.forward = async (sample, t, text, opts = {}) => {
        assert.equal(sample.dims[0], 2, 'batch 2, no unconditional half');
        calls.push(opts);
        return forward(sample, t, text, opts);
      };
      const r = await pipe.generate({ prompt: 'a cat', negativePrompt: 'a dog', width: 32, height: 32, steps: 4, cfg: 8, seed: 1, batch: 2 }, { onWarning: (m) => warnings.push(m) });
      assert.equal(calls.length, 4);
      assert.deepEqual(calls[0]!.timestepCond, guidanceScaleEmbedding(7, 256, 2));
      assert.match(warnings.join('\n'), /the negative prompt is not used: this U-Net is guidance-distilled/);
      assert.match(r.images[0]!.parameters, /Sampler: LCM, CFG scale: 8,/);
    } finally {
      await pipe.dispose();
    }
  });
});

describe('command line', () => {
  it('--sampler tcd --eta; --from-png gives the same bytes, --timestep-spacing over it; bad values exit non-zero', () => {
    const out = join(root, 'tcd.png');
    const r = runCli(root, 'generate', '-p', 'a barn', '-W', '32', '-H', '32', '--steps', '4', '--cfg', '1', '--seed', '4', '--sampler', 'tcd', '--eta', '0.4', '-o', out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(readPngText(readFileSync(out)).parameters!, /Sampler: TCD, Eta: 0.4, CFG scale: 1,/);
    const again = join(root, 'tcd-again.png');
    assert.equal(runCli(root, 'generate', '--from-png', out, '-o', again).code, 0);
    assert.deepEqual(readFileSync(again), readFileSync(out));
    // A sampler typed over the PNG's drops its eta; the spacing flag reaches the infotext.
    const euler = join(root, 'euler.png');
    const e = runCli(root, 'generate', '--from-png', out, '--sampler', 'euler', '--timestep-spacing', 'trailing', '-o', euler);
    assert.equal(e.code, 0, e.stderr);
    assert.match(readPngText(readFileSync(euler)).parameters!, /Steps: 4, Sampler: Euler, Schedule type: SGM Uniform, CFG scale: 1, Seed: 4,/);
    const bad = runCli(root, 'generate', '-p', 'x', '--eta', '2', '-o', join(root, 'bad.png'));
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--eta must be a number from 0 to 1; got "2"/);
    assert.ok(!readdirSync(root).includes('bad.png'));
  });
});
