import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import { psnr } from '../src/bench/metrics.js';
import { createScheduler, loadTextEncoder, loadTokenizer, parseUNetConfig, SdxlConditioner, StableDiffusion } from '../src/index.js';
import type { RgbImage } from '../src/index.js';
import { fixture, readTensor, relL2, runCli } from './helpers.js';

interface E2eCase {
  name: string;
  prompt: string;
  negative_prompt: string | null;
  width: number;
  height: number;
  steps: number;
  sampler: string;
  karras: boolean;
  cfg: number;
  seed: number;
  png: string;
  tensors: string;
  scheduler_config: Record<string, unknown>;
  init_noise_sigma: number;
}

// Python's json module writes -Infinity (lambda_min_clipped), which JSON.parse rejects.
const cases = (): E2eCase[] => JSON.parse(readFileSync(fixture('sdxl-tiny', 'e2e', 'cases.json'), 'utf8').replace(/-Infinity/g, 'null')) as E2eCase[];

function readRgb(path: string): RgbImage {
  const png = decode(readFileSync(path));
  assert.equal(png.channels, 3, `${path}: RGB`);
  return { width: png.width, height: png.height, data: Uint8Array.from(png.data) };
}

for (const c of cases()) {
  test(`sdxl-tiny e2e ${c.name}: the CLI draws diffusers' StableDiffusionXLPipeline image (max |diff| ≤ 3, PSNR ≥ 40 dB)`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'todo-sd-sdxl-'));
    try {
      const out = join(dir, 'out.png');
      const args = ['generate', '--model', fixture('sdxl-tiny'), '--prompt', c.prompt];
      if (c.negative_prompt !== null) args.push('--negative-prompt', c.negative_prompt);
      args.push('--width', `${c.width}`, '--height', `${c.height}`, '--steps', `${c.steps}`, '--sampler', c.sampler, '--cfg', `${c.cfg}`, '--seed', `${c.seed}`, '--out', out);
      if (c.karras) args.push('--karras');
      const r = runCli(dir, ...args);
      assert.equal(r.code, 0, r.stderr);
      const got = readRgb(out);
      const want = readRgb(fixture('sdxl-tiny', 'e2e', c.png));
      assert.deepEqual([got.width, got.height], [want.width, want.height]);
      let maxDiff = 0;
      for (let i = 0; i < got.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got.data[i]! - want.data[i]!));
      const db = psnr(got, want);
      assert.ok(maxDiff <= 3 && db >= 40, `max |diff| ${maxDiff}, PSNR ${db.toFixed(1)} dB`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("sdxl-tiny e2e schedules: timesteps, sigmas and init sigma equal diffusers' (Euler leading, DPM++ 2M Karras)", () => {
  for (const c of cases()) {
    const ref = (k: string): number[] => Array.from(readTensor(fixture('sdxl-tiny', 'e2e', c.tensors), k).data);
    const sched = createScheduler(c.sampler, c.scheduler_config, { karras: c.karras });
    sched.setTimesteps(c.steps);
    assert.ok(relL2(sched.timesteps, ref('timesteps')) < 1e-6, `${c.name} timesteps ${sched.timesteps.join(', ')}`);
    assert.ok(relL2(sched.sigmas, ref('sigmas')) < 1e-6, `${c.name} sigmas`);
    assert.ok(Math.abs(sched.initNoiseSigma - c.init_noise_sigma) < 1e-5 * c.init_noise_sigma, `${c.name} init sigma ${sched.initNoiseSigma}`);
  }
});

test('sdxl-tiny: conditioning equals diffusers\' (zeros without a negative prompt, "" encoded, time ids height first)', async () => {
  const pipe = await StableDiffusion.load(fixture('sdxl-tiny'));
  assert.equal(pipe.family, 'sdxl');
  for (const c of cases()) {
    const ref = (k: string) => readTensor(fixture('sdxl-tiny', 'e2e', c.tensors), k);
    const cond = await pipe.sdxl!.encode({ prompt: c.prompt, negativePrompt: c.negative_prompt ?? undefined, batch: 1, guided: true, clipSkip: 1, width: c.width, height: c.height });
    // Halves in CFG order [negative, positive]; an all-zero reference must be matched exactly.
    const same = (got: Float32Array, want: Float32Array): boolean => (want.every((v) => v === 0) ? got.every((v) => v === 0) : relL2(got, want) <= 1e-4);
    for (const [got, width, keys] of [
      [cond.encoderHiddenStates.data, 77 * 24, ['negative_prompt_embeds', 'prompt_embeds']],
      [cond.added!.textEmbeds.data, 12, ['negative_pooled_prompt_embeds', 'pooled_prompt_embeds']],
    ] as const) {
      keys.forEach((k, i) => assert.ok(same(got.subarray(i * width, (i + 1) * width), ref(k).data), `${c.name}: ${k}`));
    }
    assert.equal(ref('negative_pooled_prompt_embeds').data.every((v) => v === 0), c.negative_prompt === null, 'the fixture zeroes exactly when no negative prompt is given');
    const ids = Array.from(ref('add_time_ids').data);
    assert.deepEqual(Array.from(cond.added!.timeIds.data), [...ids, ...ids]);
    assert.deepEqual(ids, [c.height, c.width, 0, 0, c.height, c.width]);
  }
  // "" is encoded, not zeroed.
  const empty = await pipe.sdxl!.encode({ prompt: 'a fox', negativePrompt: '', batch: 1, guided: true, clipSkip: 1, width: 128, height: 128 });
  assert.ok(empty.encoderHiddenStates.data.subarray(0, 77 * 24).some((v) => v !== 0));
  assert.ok(empty.added!.textEmbeds.data.subarray(0, 12).some((v) => v !== 0));
  await pipe.dispose();
});

test('SdxlConditioner refuses text encoders that do not fit the U-Net, naming the widths', async () => {
  const dir = fixture('sdxl-tiny');
  const tokenizers = [await loadTokenizer(dir), await loadTokenizer(dir, { component: 'tokenizer_2' })] as const;
  const encoders = [await loadTextEncoder(dir), await loadTextEncoder(dir, { component: 'text_encoder_2' })] as const;
  const config = JSON.parse(readFileSync(join(dir, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.ok(new SdxlConditioner(tokenizers, encoders, parseUNetConfig(config)));
  assert.throws(() => new SdxlConditioner(tokenizers, encoders, parseUNetConfig({ ...config, cross_attention_dim: 32 })), /widths 8 \+ 16 = 24 do not match the U-Net's cross_attention_dim 32/);
  assert.throws(
    () => new SdxlConditioner(tokenizers, encoders, parseUNetConfig({ ...config, projection_class_embeddings_input_dim: 64 })),
    /projection_dim 12 does not match the U-Net's pooled-text width 16/,
  );
  assert.throws(() => new SdxlConditioner(tokenizers, [encoders[0], encoders[0]], parseUNetConfig({ ...config, cross_attention_dim: 16 })), /text_encoder_2 must be a CLIPTextModelWithProjection/);
});
