import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { BUILTIN_MODEL_DIR, sessionStarts, StableDiffusion, type StepInfo } from '../src/index.js';
import { hiresSize, upscaleLatents } from '../src/pipeline/hires.js';

let pipe: StableDiffusion;
before(async () => {
  pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
});
after(() => pipe.dispose());

/** Self-attention (attn1) calls of the U-Net graph that ran for these latents, as [queries, keys]. */
function selfAttention(latents: { dims: readonly number[] }): [number, number][] {
  const [b, , h, w] = latents.dims as [number, number, number, number];
  return pipe.unet
    .plan({ batch: 2 * b, height: h, width: w, textLength: 77 })
    .attentionCalls.filter((c) => c.scope.endsWith('attn1'))
    .map((c) => [c.queries, c.keys]);
}

test('hires fix 64 → 128 px on the built-in model: ToDo auto off in the first pass, factor 2 in the second', async () => {
  const seen: { phase: StepInfo['phase']; pass?: number; dims?: readonly number[]; attn1?: [number, number][] }[] = [];
  const result = await pipe.generate(
    {
      prompt: 'a lighthouse on a cliff',
      width: 64,
      height: 64,
      steps: 3,
      sampler: 'ddim',
      seed: 5,
      attention: { method: 'todo', factor: 'auto' },
      hires: { scale: 2, steps: 4, denoise: 0.5, upscaler: 'latent', attention: { method: 'todo', factor: 2 } },
    },
    { onStep: (s) => void seen.push({ phase: s.phase, pass: s.pass, dims: s.latents?.dims, attn1: s.latents && selfAttention(s.latents) }) },
  );
  const img = result.images[0]!;
  assert.deepEqual([img.width, img.height], [128, 128]);
  assert.deepEqual(
    seen.map((s) => `${s.phase}:${s.pass}`),
    ['denoise:1', 'denoise:1', 'denoise:1', 'hires:2', 'hires:2', 'decode:2'],
  );
  const first = seen[0]!;
  const second = seen[3]!;
  assert.deepEqual(first.dims, [1, 4, 32, 32]);
  assert.deepEqual(second.dims, [1, 4, 64, 64]);
  // First pass: every self-attention sees all its tokens. Second: the top level's keys are a quarter.
  assert.ok(first.attn1!.every(([q, k]) => q === k));
  assert.deepEqual(second.attn1!.filter(([q]) => q === 64 * 64), [[4096, 1024], [4096, 1024], [4096, 1024]]);
  assert.deepEqual(
    result.settings.passes.map((p) => [p.pass, p.width, p.steps, p.attention.method === 'todo' ? p.attention.factor : 0]),
    [[1, 64, 3, 1], [2, 128, 2, 2]],
  );
  assert.match(img.parameters, /Size: 64x64, .*ToDo factor: 1\.0, .*Denoising strength: 0\.5, Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent, Hires ToDo factor: 2\.0/);
});

test('the other upscalers: latent-nearest and lanczos (decode → Lanczos → encode)', async () => {
  const base = { prompt: 'a red barn', width: 32, height: 32, steps: 2, sampler: 'euler-a' as const, seed: 2 };
  const near = await pipe.generate({ ...base, hires: { scale: 1.5, steps: 2, denoise: 0.5, upscaler: 'latent-nearest' } });
  const lanczos = await pipe.generate({ ...base, hires: { scale: 1.5, steps: 2, denoise: 0.5, upscaler: 'lanczos' } });
  for (const r of [near, lanczos]) assert.deepEqual([r.images[0]!.width, r.images[0]!.height], [48, 48]);
  assert.doesNotMatch(near.images[0]!.parameters, /ToDo/, 'the previous run\'s attention does not carry over');
  assert.match(near.images[0]!.parameters, /Hires upscaler: Latent \(nearest\), Strength rule: diffusers, Version/);
  assert.match(lanczos.images[0]!.parameters, /Hires upscaler: Lanczos/);
  assert.notDeepEqual(near.images[0]!.data, lanczos.images[0]!.data);
  const again = await pipe.generate({ ...base, hires: { scale: 1.5, steps: 2, denoise: 0.5, upscaler: 'lanczos' } });
  assert.deepEqual(again.images[0]!.data, lanczos.images[0]!.data, 'same seed, same picture');
});

test("latent upscaling is torch's interpolate (bilinear, align_corners=False; nearest)", () => {
  const h = 3;
  const w = 4;
  const x = { data: Float32Array.from({ length: 2 * h * w }, (_, i) => Math.sin(i * 1.7) * 3), dims: [1, 2, h, w] };
  const up = upscaleLatents(x, 7, 10, 'bilinear');
  const near = upscaleLatents(x, 7, 10, 'nearest');
  // Independent reference: src = max(0, (d + 0.5)·in/out − 0.5); nearest src = floor(d·in/out).
  const coord = (d: number, inSize: number, outSize: number): [number, number, number] => {
    const s = Math.max(0, (d + 0.5) * (inSize / outSize) - 0.5);
    const i0 = Math.min(Math.floor(s), inSize - 1);
    return [i0, Math.min(i0 + 1, inSize - 1), s - i0];
  };
  for (let c = 0; c < 2; c++) {
    for (let y = 0; y < 7; y++) {
      for (let xx = 0; xx < 10; xx++) {
        const at = (yy: number, xi: number): number => x.data[c * h * w + yy * w + xi]!;
        const [y0, y1, ly] = coord(y, h, 7);
        const [x0, x1, lx] = coord(xx, w, 10);
        const want = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
        assert.ok(Math.abs(up.data[c * 70 + y * 10 + xx]! - want) < 1e-5);
        assert.equal(near.data[c * 70 + y * 10 + xx], at(Math.floor((y * h) / 7), Math.floor((xx * w) / 10)));
      }
    }
  }
});

test('a hires scale off the 8-pixel grid names the nearest valid scale', async () => {
  assert.deepEqual(hiresSize(64, 48, 2, 8), { width: 128, height: 96 });
  assert.throws(() => hiresSize(64, 64, 1.3, 8), /hires scale 1\.3 gives 83\.2x83\.2 px, but sizes must be multiples of 8; the nearest valid scale is 1\.25 \(80x80\)/);
  assert.throws(() => hiresSize(64, 48, 1.3, 8), /the nearest valid scale is 1\.5 \(96x72\)/);
  assert.throws(() => hiresSize(64, 64, 0.5, 8), /hires scale must be a number from 1 to 8/);
  await assert.rejects(pipe.generate({ prompt: 'x', width: 64, height: 64, hires: { scale: 2, denoise: 1.5, upscaler: 'latent' } }), /hires denoise must be a number from 0 to 1; got 1\.5/);
});

test('an AbortSignal stops after the current step with an AbortError', async () => {
  const controller = new AbortController();
  const steps: number[] = [];
  await assert.rejects(
    pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 5, sampler: 'ddim', seed: 1 }, {
      signal: controller.signal,
      onStep: (s) => {
        steps.push(s.step);
        controller.abort();
      },
    }),
    (e: Error) => e.name === 'AbortError',
  );
  assert.deepEqual(steps, [1]);
});

test("a hires fix keeps both passes' U-Net sessions open when two fit in memory: the next generation starts none", async () => {
  const unetStarts = (): number => sessionStarts().unet?.count ?? 0;
  const o = { prompt: 'a harbour', width: 40, height: 40, steps: 3, sampler: 'ddim' as const, seed: 2, hires: { scale: 2, steps: 2, denoise: 0.5, upscaler: 'latent' as const } };
  const first = unetStarts();
  await pipe.generate(o);
  assert.equal(unetStarts() - first, 2, 'one session per pass size');
  const again = unetStarts();
  await pipe.generate({ ...o, seed: 3 });
  assert.equal(unetStarts() - again, 0, 'both kept');
  assert.ok(2 * pipe.unet.sessionWeightBytes() < 0.4 * totalmem(), 'the built-in U-Net fits twice');
  // Without a hires fix, one session: the next size replaces it.
  await pipe.generate({ ...o, hires: undefined });
  const plain = unetStarts();
  await pipe.generate({ ...o, hires: undefined, width: 48 });
  await pipe.generate({ ...o, hires: undefined });
  assert.equal(unetStarts() - plain, 2);
});

test("the U-Net's session weight bytes: every weight in its file, in fp32", () => {
  const file = SafetensorsFile.open(join(BUILTIN_MODEL_DIR, 'unet', 'diffusion_pytorch_model.safetensors'));
  const params = [...file.tensors.values()].reduce((a, t) => a + t.shape.reduce((p, d) => p * d, 1), 0);
  assert.equal(pipe.unet.sessionWeightBytes(), 4 * params);
});
