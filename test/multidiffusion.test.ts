/**
 * MultiDiffusion against diffusers' StableDiffusionPanoramaPipeline (0.26), transcribed: the
 * views (get_views: count rule, circular wrap), one scheduler state per view, and the
 * value / count average, checked on a fake model against an independent per-pixel
 * re-computation; then in the pipeline: one view covering the canvas is the plain pipeline
 * bit for bit, view batches, img2img, circular decoding, ToDo's auto factor per view, errors.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { conditioningForViews, cropColumns, latentViews, MultiDiffusion, padCircular, resolveTiling, TILING_DEFAULTS, type LatentView, type ModelEvaluation, type ViewBatch } from '../src/pipeline/multidiffusion.js';
import { createScheduler, type SamplerName, type Scheduler } from '../src/scheduler/index.js';
import type { Tensor } from '../src/tensor.js';
import { parseParameters } from '../src/pipeline/parameters.js';
import { optionsFromParameters } from '../src/pipeline/from-parameters.js';
import { tilingFromInfotext, tilingInfotext } from '../src/pipeline/tiled-infotext.js';
import { relL2, runCli, sharedDir } from './helpers.js';

const f = Math.fround;
/** Stable Diffusion 1.x's scheduler config (PNDM, skip_prk_steps), as tiny-photo ships it. */
const SD = JSON.parse(readFileSync(join(sharedDir, 'models', 'tiny-photo', 'scheduler', 'scheduler_config.json'), 'utf8')) as object;

/** diffusers' get_views, transcribed (pixel sizes, `/= 8`, floor division on floats). */
function diffusersViews(heightPx: number, widthPx: number, window: number, stride: number, circular: boolean): [number, number, number, number][] {
  const h = heightPx / 8;
  const w = widthPx / 8;
  const nh = h > window ? Math.floor((h - window) / stride) + 1 : 1;
  const nw = circular ? (w > window ? Math.floor(w / stride) : 1) : w > window ? Math.floor((w - window) / stride) + 1 : 1;
  return Array.from({ length: nh * nw }, (_, i) => {
    const hs = Math.floor(i / nw) * stride;
    const ws = (i % nw) * stride;
    return [hs, hs + window, ws, ws + window];
  });
}

const tiling = (o: Partial<typeof TILING_DEFAULTS>): typeof TILING_DEFAULTS => ({ ...TILING_DEFAULTS, ...o });

describe('views', () => {
  it("equal diffusers' get_views where they cover the canvas (4096x2304 on SD 1.5: 1653 views)", () => {
    for (const [hp, wp, win, st, circ] of [
      [512, 2048, 64, 8, false],
      [2304, 4096, 64, 8, false],
      [512, 2048, 64, 8, true],
      [512, 2048, 64, 16, true],
      [768, 1024, 64, 32, false],
      [512, 512, 64, 8, false],
    ] as const) {
      const ours = latentViews(hp / 8, wp / 8, tiling({ window: win, stride: st, circular: circ })).map((v) => [v.top, v.top + v.height, v.left, v.left + v.width]);
      assert.deepEqual(ours, diffusersViews(hp, wp, win, st, circ), `${wp}x${hp} window ${win} stride ${st}${circ ? ' circular' : ''}`);
    }
    assert.equal(latentViews(288, 512, tiling({})).length, 57 * 29);
  });

  it('add one view flush with the far edge where diffusers would leave latents uncovered', () => {
    // 100 = 64 + 36: views at 0 and 32 end at 96; diffusers leaves 96..99 at zero.
    const v = latentViews(64, 100, tiling({ window: 64, stride: 32 }));
    assert.deepEqual(
      v.map((x) => x.left),
      [0, 32, 36],
    );
    // Circular: floor(100 / 40) = 2 views cover 0..79 (wrapping none); one more at 36 covers the rest.
    const c = latentViews(40, 100, tiling({ window: 40, stride: 40, circular: true }));
    assert.deepEqual(
      c.map((x) => x.left),
      [0, 40, 60],
    );
  });

  it('cut a window larger than the canvas to it (diffusers slices), wrap circular views past the right edge', () => {
    assert.deepEqual(latentViews(32, 100, tiling({ window: 64, stride: 36 })), [
      { top: 0, left: 0, height: 32, width: 64 },
      { top: 0, left: 36, height: 32, width: 64 },
    ]);
    const c = latentViews(8, 24, tiling({ window: 16, stride: 8, circular: true }));
    assert.deepEqual(
      c.map((x) => x.left),
      [0, 8, 16],
    );
    const x: Tensor = { data: Float32Array.from({ length: 8 * 24 }, (_, i) => i), dims: [1, 1, 8, 24] };
    const last = new MultiDiffusion(x.dims, tiling({ window: 16, stride: 8, circular: true }), createScheduler('ddim', SD)).views[2]!;
    assert.deepEqual(last, { top: 0, left: 16, height: 8, width: 16 });
  });

  it('refuse bad options with the fix', () => {
    assert.throws(() => resolveTiling({ window: 4 }, 8), /window must be an integer of latent pixels from 8 \(the U-Net halves the grid 3 times\)/);
    assert.throws(() => resolveTiling({ window: 64, stride: 65 }, 8), /stride must be an integer of latent pixels from 1 to the window \(64\): a larger stride leaves gaps/);
    assert.throws(() => resolveTiling({ viewBatch: 0 }, 8), /viewBatch must be an integer from 1 to 64/);
    assert.throws(() => resolveTiling({ window: 8.5 }, 8), /window must be an integer/);
    assert.throws(() => latentViews(64, 48, tiling({ window: 64, circular: true })), /circular tiling wraps views of 64 latent pixels around the canvas, which is only 48 wide: use a window of at most 48 or a wider image/);
  });
});

/** A model whose output at a latent pixel depends on its neighbours inside the view, so where a view ends matters. */
const fakeModel: ModelEvaluation = async (input, t) => {
  const [n, c, h, w] = input.dims as [number, number, number, number];
  const out = new Float32Array(input.data.length);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const at = (p * h + y) * w + x;
        const right = input.data[(p * h + y) * w + Math.min(x + 1, w - 1)]!;
        const below = input.data[(p * h + Math.min(y + 1, h - 1)) * w + x]!;
        out[at] = 0.5 * input.data[at]! + 0.2 * right - 0.15 * below + 0.05 * Math.sin(((p % c) * h + y) * w + x + t / 50);
      }
    }
  }
  return { data: out, dims: input.dims };
};

/**
 * The panorama loop written out per pixel: every view its own fresh scheduler (the deep copy of
 * the state after set_timesteps), and each latent the float32 mean, in view order, of the views
 * whose rectangle (wrapped modulo the width) holds it.
 */
async function referencePanorama(x0: Tensor, views: readonly LatentView[], make: () => Scheduler): Promise<Float32Array> {
  const [b, c, h, w] = x0.dims as [number, number, number, number];
  const schedulers = views.map(() => make());
  const ts = schedulers[0]!.timesteps;
  let x = x0.data;
  for (const t of ts) {
    const outs: Float32Array[] = [];
    for (const [i, v] of views.entries()) {
      const crop = new Float32Array(b * c * v.height * v.width);
      for (let p = 0; p < b * c; p++) for (let y = 0; y < v.height; y++) for (let k = 0; k < v.width; k++) crop[(p * v.height + y) * v.width + k] = x[(p * h + v.top + y) * w + ((v.left + k) % w)]!;
      const latents = { data: crop, dims: [b, c, v.height, v.width] };
      const s = schedulers[i]!;
      outs.push(s.step(await fakeModel(s.scaleModelInput(latents, t), t, 0), t, latents).data);
    }
    const next = new Float32Array(x.length);
    for (let p = 0; p < b * c; p++) {
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          let sum = 0;
          let n = 0;
          for (const [i, v] of views.entries()) {
            const dy = y - v.top;
            const dx = (xx - v.left + w) % w;
            if (dy < 0 || dy >= v.height || dx >= v.width) continue;
            sum = f(sum + outs[i]![(p * v.height + dy) * v.width + dx]!);
            n++;
          }
          next[(p * h + y) * w + xx] = n > 0 ? f(sum / n) : 0;
        }
      }
    }
    x = next;
  }
  return x;
}

describe('MultiDiffusion step (fake model) vs the per-pixel reference', () => {
  const start = (b: number, h: number, w: number): Tensor => ({ data: Float32Array.from({ length: b * 4 * h * w }, (_, i) => Math.sin(i * 0.37) * 1.3), dims: [b, 4, h, w] });
  for (const [sampler, o, h, w, b] of [
    ['ddim', { window: 8, stride: 4 }, 12, 20, 1],
    ['dpmpp-2m', { window: 8, stride: 4 }, 12, 20, 2],
    ['unipc', { window: 8, stride: 3 }, 8, 19, 1],
    ['pndm', { window: 8, stride: 4, circular: true }, 8, 20, 1],
    ['euler', { window: 8, stride: 2, viewBatch: 3 }, 10, 12, 1],
    ['heun', { window: 8, stride: 4, viewBatch: 2, circular: true }, 8, 14, 1],
  ] as [SamplerName, Partial<typeof TILING_DEFAULTS>, number, number, number][]) {
    it(`${sampler}, ${h}x${w} latents, window ${o.window} stride ${o.stride}${o.viewBatch ? ` view batch ${o.viewBatch}` : ''}${o.circular ? ', circular' : ''}, batch ${b}`, async () => {
      const steps = 5;
      const make = (): Scheduler => {
        const s = createScheduler(sampler, SD);
        s.setTimesteps(steps);
        return s;
      };
      const t = tiling(o);
      const x0 = start(b, h, w);
      const scheduler = make();
      const md = new MultiDiffusion(x0.dims, t, scheduler);
      const calls: ViewBatch[] = [];
      const spy: ModelEvaluation = (input, ts, step, views) => {
        calls.push(views!);
        assert.equal(input.dims[0], views!.views.length * b, 'one input row per view and image');
        return fakeModel(input, ts, step, views);
      };
      let x = x0;
      for (const [i, ts] of scheduler.timesteps.entries()) x = await md.step(x, ts, Math.floor(i / scheduler.order), spy);
      const expected = await referencePanorama(x0, md.views, make);
      assert.deepEqual(x.data, expected);
      // Every call has the first batch's size (a short last batch is padded with its last view).
      assert.ok(calls.every((c) => c.views.length === Math.min(t.viewBatch, md.views.length)));
      assert.deepEqual(calls[0]!.canvas, [h, w]);
    });
  }

  it('a one-view canvas is the plain scheduler loop exactly', async () => {
    const x0 = start(1, 8, 8);
    const a = createScheduler('dpmpp-2m', SD);
    a.setTimesteps(6);
    const b = createScheduler('dpmpp-2m', SD);
    b.setTimesteps(6);
    const md = new MultiDiffusion(x0.dims, tiling({ window: 8 }), b);
    let xa = x0;
    let xb = x0;
    for (const t of a.timesteps) {
      xa = a.step(await fakeModel(a.scaleModelInput(xa, t), t, 0), t, xa);
      xb = await md.step(xb, t, 0, fakeModel);
    }
    assert.deepEqual(xb.data, xa.data);
  });
});

describe('helpers', () => {
  it('conditioning per view: each half (uncond, cond) repeated once per view, SDXL added inputs too', () => {
    const rows = (t: Tensor): number[] => Array.from(t.data.filter((_, i) => i % 2 === 0));
    const ehs = { data: Float32Array.from([10, 10, 11, 11, 20, 20, 21, 21]), dims: [4, 1, 2] }; // neg b0, neg b1, pos b0, pos b1
    const added = { textEmbeds: { data: Float32Array.from([1, 2]), dims: [2, 1] }, timeIds: { data: Float32Array.from([3, 4]), dims: [2, 1] } };
    const c = conditioningForViews({ encoderHiddenStates: ehs, added }, 3, 2);
    assert.deepEqual(rows(c.encoderHiddenStates), [10, 11, 10, 11, 10, 11, 20, 21, 20, 21, 20, 21]);
    assert.deepEqual(c.encoderHiddenStates.dims, [12, 1, 2]);
    assert.deepEqual(Array.from(c.added!.textEmbeds.data), [1, 1, 1, 2, 2, 2]);
    assert.deepEqual(Array.from(conditioningForViews({ encoderHiddenStates: { data: Float32Array.from([5, 6]), dims: [2, 1, 1] } }, 2, 1).encoderHiddenStates.data), [5, 6, 5, 6]);
  });

  it("circular decode padding: 8 wrapped columns each side, cut off after (decode_latents_with_padding)", () => {
    const x: Tensor = { data: Float32Array.from({ length: 2 * 10 }, (_, i) => i), dims: [1, 1, 2, 10] };
    const p = padCircular(x, 3);
    assert.deepEqual(Array.from(p.data.subarray(0, 16)), [7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]);
    assert.deepEqual(cropColumns(p, 3, 10).data, x.data);
  });
});

describe('tiling in the pipeline (tiny-photo)', () => {
  let pipe: StableDiffusion;
  before(async () => {
    pipe = await StableDiffusion.load(join(sharedDir, 'models', 'tiny-photo'));
  });
  after(() => pipe.dispose());
  const base = { prompt: 'a harbour', width: 32, height: 32, steps: 4, seed: 5, cfg: 7.5 };

  for (const sampler of ['dpmpp-2m', 'pndm', 'euler-a', 'unipc'] as const) {
    it(`${sampler}: one view covering the canvas is the plain pipeline bit for bit`, async () => {
      const plain = await pipe.generate({ ...base, sampler });
      const tiled = await pipe.generate({ ...base, sampler, tiling: { window: 16, stride: 8 } });
      assert.deepEqual(tiled.images[0]!.data, plain.images[0]!.data);
      assert.equal(tiled.settings.passes[0]!.views, 1);
    });
  }

  it('img2img: one view is plain img2img bit for bit; several views run and differ', async () => {
    const init = (await pipe.generate({ ...base, width: 48 })).images[0]!;
    const i2i = { ...base, width: 48, initImage: init, strength: 0.6, sampler: 'ddim' };
    const plain = await pipe.generate(i2i);
    const one = await pipe.generate({ ...i2i, tiling: { window: 24 } });
    assert.deepEqual(one.images[0]!.data, plain.images[0]!.data);
    const several = await pipe.generate({ ...i2i, tiling: { window: 16, stride: 4 } });
    assert.equal(several.settings.passes[0]!.views, 3);
    assert.notDeepEqual(several.images[0]!.data, plain.images[0]!.data);
  });

  it('view batches give the views one at a time (batched convolution rounding aside), guidance paired per view', async () => {
    const o = { ...base, width: 64, sampler: 'ddim' as const };
    const one = await pipe.generate({ ...o, tiling: { window: 16, stride: 8, viewBatch: 1 } }, {});
    const two = await pipe.generate({ ...o, tiling: { window: 16, stride: 8, viewBatch: 2 } });
    assert.equal(one.settings.passes[0]!.views, 3);
    const err = relL2(two.images[0]!.data, one.images[0]!.data);
    assert.ok(err < 1e-3, `relative L2 ${err}`);
  });

  it('circular: the picture wraps (its left and right columns continue each other) and reads back from the infotext', async () => {
    const r = await pipe.generate({ ...base, width: 64, sampler: 'ddim', tiling: { window: 16, stride: 8, circular: true } });
    const img = r.images[0]!;
    assert.equal(r.settings.passes[0]!.views, 4 * 1);
    const col = (x: number): number[] => Array.from({ length: img.height * 3 }, (_, i) => img.data[(Math.floor(i / 3) * img.width + x) * 3 + (i % 3)]!);
    const diff = (a: number[], b: number[]): number => a.reduce((s, v, i) => s + Math.abs(v - b[i]!), 0) / a.length;
    // Across the wrap seam the columns differ no more than neighbours inside the picture do.
    const inside = (diff(col(20), col(21)) + diff(col(40), col(41))) / 2;
    assert.ok(diff(col(63), col(0)) < 2 * inside + 4, `seam ${diff(col(63), col(0))} vs inside ${inside}`);
    const { options } = optionsFromParameters(parseParameters(img.parameters), [0, 1]);
    assert.deepEqual(options.tiling, { window: 16, stride: 8, viewBatch: 1, circular: true });
  });

  it("ToDo 'auto' keys off the view, not the canvas", async () => {
    // 256x256 px = 128x128 latents: auto would be 2 on the canvas; the 64x64 views get 1.
    const o = { prompt: 'x', width: 256, height: 256, steps: 1, seed: 1, cfg: 1, sampler: 'ddim' as const, tiling: { window: 64, stride: 64 } };
    const auto = await pipe.generate({ ...o, attention: { method: 'todo', factor: 'auto' } });
    assert.equal(auto.settings.passes[0]!.attention.method === 'todo' && auto.settings.passes[0]!.attention.factor, 1);
    const dense = await pipe.generate({ ...o, attention: { method: 'dense' } });
    assert.deepEqual(auto.images[0]!.data, dense.images[0]!.data);
    // The graph built for the view's shape has every key at the top level; the canvas's would have a quarter.
    pipe.unet.setAttention({ method: 'todo', factor: 'auto' });
    const topKeys = (side: number): number[] => pipe.unet.plan({ batch: 1, height: side, width: side, textLength: 77 }).attentionCalls.filter((c) => c.scope.endsWith('attn1') && c.queries === side * side).map((c) => c.keys);
    assert.deepEqual(topKeys(64), [4096, 4096, 4096]);
    assert.deepEqual(topKeys(128), [4096, 4096, 4096]);
  });

  it('bad tiling fails before any work', async () => {
    await assert.rejects(pipe.generate({ ...base, tiling: { window: 16, stride: 32 } }), /stride must be an integer of latent pixels from 1 to the window \(16\)/);
    await assert.rejects(pipe.generate({ ...base, tiling: { window: 32, circular: true } }), /only 16 wide: use a window of at most 16/);
    await assert.rejects(pipe.generate({ ...base, tiling: true as never }), /tiling must be an object/);
  });
});

describe('Tiled Diffusion infotext', () => {
  it("writes the extension's dict as A1111 does (json.dumps) and reads it back, as well as an extension's own text", () => {
    const text = tilingInfotext(tiling({ window: 96, stride: 48, viewBatch: 4 }));
    assert.equal(text, '{"Method": "MultiDiffusion", "Tile tile width": 96, "Tile tile height": 96, "Tile Overlap": 48, "Tile batch size": 4}');
    const a1111 = `a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 2048x1024, Model: sd15, Tiled Diffusion: ${text}, Version: v1.10.1`;
    const parsed = parseParameters(a1111);
    assert.equal(parsed.settings['Tiled Diffusion'], text);
    assert.equal(parsed.settings.Version, 'v1.10.1');
    assert.deepEqual(tilingFromInfotext(parsed.settings), { window: 96, stride: 48, viewBatch: 4, circular: false });
    // The extension's rule for an overlap at least the tile: overlap = tile − 4.
    assert.equal(tilingFromInfotext({ 'Tiled Diffusion': '{"Method": "MultiDiffusion", "Tile tile width": 64, "Tile tile height": 64, "Tile Overlap": 64}' })!.stride, 4);
  });

  it('names what it cannot apply', () => {
    const mix = 'x\nSteps: 20, Sampler: Euler a, Seed: 1, Tiled Diffusion: {"Method": "Mixture of Diffusers", "Tile tile width": 96, "Tile tile height": 96, "Tile Overlap": 48, "Tile batch size": 4}';
    const r = optionsFromParameters(parseParameters(mix), [0]);
    assert.equal(r.options.tiling, undefined);
    assert.deepEqual(r.notApplied, ['Tiled Diffusion (Tiled Diffusion method "Mixture of Diffusers" is not offered here (only MultiDiffusion))']);
    assert.throws(() => tilingFromInfotext({ 'Tiled Diffusion': '{"Tile tile width": 96, "Tile tile height": 64}' }), /only square tiles/);
  });
});

describe('CLI', () => {
  it('--tile-window/--tile-stride/--circular generate a panorama; --from-png makes it again byte for byte; bad flags fail', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'todo-sd-tiled-'));
    const r = runCli(tmp, 'generate', '--prompt', 'a wide valley', '--width', '96', '--height', '32', '--steps', '2', '--seed', '2', '--tile-window', '16', '--tile-stride', '8', '--circular', '--out', 'pano.png', '--json');
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as { tiling: unknown; passes: { views: number }[] };
    assert.deepEqual(s.tiling, { window: 16, stride: 8, viewBatch: 1, circular: true });
    assert.equal(s.passes[0]!.views, 6);
    const again = runCli(tmp, 'generate', '--from-png', 'pano.png', '--out', 'again.png');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(readFileSync(join(tmp, 'again.png')), readFileSync(join(tmp, 'pano.png')));
    const bad = runCli(tmp, 'generate', '--prompt', 'x', '--width', '32', '--tile-window', '64', '--circular', '--out', 'bad.png');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /circular tiling wraps views of 64 latent pixels around the canvas, which is only 16 wide/);
    assert.ok(!existsSync(join(tmp, 'bad.png')));
  });
});
