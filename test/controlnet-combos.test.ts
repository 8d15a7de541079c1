/**
 * ControlNet beside DeepCache, NGMS and MultiDiffusion. References: exact identities (the U-Net's
 * shallow graph fed the same step's feature equals the whole U-Net, with residuals too; one view
 * covering the canvas equals no tiling; interval 1 equals no DeepCache) and the ControlNet run
 * by hand on the rows and rectangles each call must see.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ControlNet } from '../src/models/controlnet.js';
import { loadUNet } from '../src/models/unet.js';
import { controlMapsToTensor, resizeControlMap } from '../src/pipeline/control-image.js';
import { ControlNetPass, resolveControlUnit } from '../src/pipeline/controlnet.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { randn } from '../src/index.js';
import type { Tensor } from '../src/tensor.js';
import { controlNetModels } from './controlnet-models.js';
import { relL2 } from './helpers.js';

const m = controlNetModels();
/** A control picture that differs along both axes, so that every crop is its own. */
const picture = (w: number, h: number): { width: number; height: number; data: Uint8Array } => ({
  width: w,
  height: h,
  data: Uint8Array.from({ length: w * h * 3 }, (_, i) => {
    const p = Math.floor(i / 3);
    return ((p % w) * 7 + Math.floor(p / w) * 13 + (i % 3) * 50) % 256;
  }),
});
const tensor = (dims: number[], seed: number): Tensor => ({ data: randn(seed, dims), dims });

function maxAbs(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.dims, b.dims);
  let d = 0;
  for (let i = 0; i < a.data.length; i++) d = Math.max(d, Math.abs(a.data[i]! - b.data[i]!));
  return d;
}

let pipe: StableDiffusion | undefined;
async function tinyPipe(): Promise<StableDiffusion> {
  pipe ??= await StableDiffusion.load(m.tiny);
  return pipe;
}
after(() => pipe?.dispose());

test("DeepCache + ControlNet graphs: forwardShallow gives forward's residuals above the cache point, and the shallow U-Net fed them and the same step's feature gives the whole U-Net's output", async () => {
  const unet = await loadUNet(m.tiny);
  const cn = await ControlNet.load(m.cn);
  await Promise.all([unet.keepSessions(2), cn.keepSessions(2)]);
  const sample = tensor([2, 4, 8, 8], 1);
  const text = tensor([2, 77, unet.config.crossAttentionDim], 2);
  const image = tensor([2, 3, 16, 16], 3);
  const all = await cn.forward(sample, 700, text, image, { conditioningScale: 0.9 });
  const plain = await unet.forward(sample, 700, text, { controlResiduals: all });
  for (let block = 0; block < unet.config.blockOutChannels.length; block++) {
    for (let layer = 0; layer <= unet.config.layersPerBlock; layer++) {
      const point = { block, layer };
      const label = JSON.stringify(point);
      const shallowResiduals = await cn.forwardShallow(sample, 700, text, image, point, { conditioningScale: 0.9 });
      assert.equal(shallowResiduals.mid, undefined, `${label}: no mid residual`);
      assert.equal(shallowResiduals.down.length, 1 + block * (unet.config.layersPerBlock + 1) + layer, `${label}: one residual per skip above the cache point`);
      shallowResiduals.down.forEach((r, i) => assert.ok(maxAbs(r, all.down[i]!) <= 1e-6 * Math.max(...all.down[i]!.data.map(Math.abs)), `${label}: residual ${i}`));
      const full = await unet.forwardCached(sample, 700, text, { point }, { controlResiduals: all });
      assert.ok(maxAbs(full.sample, plain) <= 1e-5 * Math.max(...plain.data.map(Math.abs)), `${label}: full graph with residuals = plain U-Net with them`);
      const shallow = await unet.forwardCached(sample, 700, text, { point, feature: full.feature }, { controlResiduals: shallowResiduals });
      assert.ok(maxAbs(shallow.sample, full.sample) <= 1e-5 * Math.max(...full.sample.data.map(Math.abs)), `${label}: shallow graph on the same step's feature and residuals = full output`);
      // The residuals reach the shallow graph: without them the output moves.
      const zeros = { down: shallowResiduals.down.map((r) => ({ data: new Float32Array(r.data.length), dims: r.dims })) };
      const bare = await unet.forwardCached(sample, 700, text, { point, feature: full.feature }, { controlResiduals: zeros });
      assert.ok(relL2(bare.sample.data, shallow.sample.data) > 1e-4, `${label}: the shallow skips' residuals act`);
      await assert.rejects(unet.forwardCached(sample, 700, text, { point, feature: full.feature }, { controlResiduals: { down: shallowResiduals.down.slice(1) } }), /controlResiduals\.down must hold \d+ tensors/);
      await assert.rejects(unet.forwardCached(sample, 700, text, { point, feature: full.feature }, { controlResiduals: { ...shallowResiduals, mid: all.mid } }), /shallow graph has no mid block/);
    }
  }
  await Promise.all([unet.dispose(), cn.dispose()]);
});

test('DeepCache + ControlNet in the pipeline: interval 1 is the plain ControlNet generation; interval 2 runs shallow steps under the ControlNet', async () => {
  const p = await tinyPipe();
  const base = { prompt: 'a bridge', width: 32, height: 32, steps: 4, seed: 3, sampler: 'euler' as const, controlnets: [{ model: m.cn, image: picture(32, 32) }] };
  const plain = await p.generate(base);
  const one = await p.generate({ ...base, deepcache: { interval: 1 } });
  const pixels = (r: typeof plain): Tensor => ({ data: Float32Array.from(r.images[0]!.data), dims: [r.images[0]!.data.length] });
  assert.ok(maxAbs(pixels(one), pixels(plain)) <= 1, 'interval 1 = no DeepCache');
  const two = await p.generate({ ...base, deepcache: { interval: 2 } });
  assert.deepEqual(two.settings.passes[0]!.evaluations, { full: 2, shallow: 2, promptOnly: 0 });
  const noControl = await p.generate({ ...base, controlnets: undefined, deepcache: { interval: 2 } });
  assert.ok(maxAbs(pixels(two), pixels(noControl)) > 2, 'the ControlNet still acts with DeepCache');
});

test('ControlNet under NGMS: a prompt-only call runs the ControlNet on the prompt rows alone', async () => {
  const cn = await ControlNet.load(m.cn);
  const unit = resolveControlUnit({ model: cn, image: picture(16, 16), scale: 0.7 }, cn, 0, { width: 16, height: 16 }, {});
  const pass = new ControlNetPass([unit], { width: 16, height: 16 }, 2, 4, cn.config, { method: 'dense' }, false);
  const input = tensor([2, 4, 8, 8], 4);
  const text = tensor([2, 3, cn.config.crossAttentionDim], 5);
  const got = await pass.residuals({ index: 1, timestep: 400, input, conditioning: { encoderHiddenStates: text }, guided: false, attentionActive: true });
  const one = controlMapsToTensor([resizeControlMap(unit.map, 16, 16, unit.resizeMode)]);
  const want = await cn.forward(input, 400, text, { data: new Float32Array([...one.data, ...one.data]), dims: [2, ...one.dims.slice(1)] }, { conditioningScale: 0.7 });
  [...got.down, got.mid!].forEach((r, i) => assert.ok(relL2(r.data, [...want.down, want.mid][i]!.data) < 1e-6, `residual ${i}`));
  // A guided call split in two: the negative half alone gets the unit's residuals, unless the unit acts on the prompt's half alone (guess mode).
  const negative = await pass.residuals({ index: 1, timestep: 400, input, conditioning: { encoderHiddenStates: text }, guided: false, negativeOnly: true, attentionActive: true });
  [...negative.down, negative.mid!].forEach((r, i) => assert.ok(relL2(r.data, [...want.down, want.mid][i]!.data) < 1e-6, `negative half, residual ${i}`));
  const guess = resolveControlUnit({ model: cn, image: picture(16, 16), scale: 0.7, guessMode: true }, cn, 0, { width: 16, height: 16 }, {});
  const guessPass = new ControlNetPass([guess], { width: 16, height: 16 }, 2, 4, cn.config, { method: 'dense' }, false);
  const none = await guessPass.residuals({ index: 1, timestep: 400, input, conditioning: { encoderHiddenStates: text }, guided: false, negativeOnly: true, attentionActive: true });
  assert.ok([...none.down, none.mid!].every((r) => r.data.every((v) => v === 0)), 'guess mode: nothing on the negative half');
  // The pipeline's NGMS prompt-only steps run with it.
  const p = await tinyPipe();
  const r = await p.generate({ prompt: 'a bridge', width: 32, height: 32, steps: 4, seed: 3, sampler: 'euler', sMinUncond: 1000, controlnets: [{ model: m.cn, image: picture(32, 32) }] });
  assert.equal(r.settings.passes[0]!.evaluations.promptOnly, 2);
  await cn.dispose();
});

test("ControlNet under MultiDiffusion: each view takes the control image's rectangle under it (wrapping when circular); one view over the canvas is the untiled generation", async () => {
  const cn = await ControlNet.load(m.cn);
  const size = { width: 32, height: 16 };
  const unit = resolveControlUnit({ model: cn, image: picture(32, 16), resizeMode: 'just-resize' }, cn, 0, size, {});
  const pass = new ControlNetPass([unit], size, 1, 4, cn.config, { method: 'dense' }, false);
  const whole = controlMapsToTensor([resizeControlMap(unit.map, 32, 16, 'just-resize')]);
  const s = 2; // the tiny VAE's (and ControlNet's) scale
  // The view's pixels cut by hand from the whole control image: rows top·s …, columns (left·s + k) mod width.
  const crop = (v: { top: number; left: number; height: number; width: number }): Float32Array => {
    const out: number[] = [];
    for (let c = 0; c < 3; c++) for (let y = 0; y < v.height * s; y++) for (let x = 0; x < v.width * s; x++) out.push(whole.data[(c * 16 + v.top * s + y) * 32 + ((v.left * s + x) % 32)]!);
    return Float32Array.from(out);
  };
  const views = [
    { top: 0, left: 2, height: 4, width: 4 },
    { top: 4, left: 14, height: 4, width: 4 },
  ];
  const input = tensor([4, 4, 4, 4], 6);
  const text = tensor([4, 3, cn.config.crossAttentionDim], 7);
  const got = await pass.residuals({ index: 0, timestep: 300, input, conditioning: { encoderHiddenStates: text }, guided: true, attentionActive: true, views: { index: 0, views, canvas: [8, 16] } });
  const images = views.map(crop);
  const image = { data: new Float32Array([...images[0]!, ...images[1]!, ...images[0]!, ...images[1]!]), dims: [4, 3, 8, 8] };
  const want = await cn.forward(input, 300, text, image);
  [...got.down, got.mid!].forEach((r, i) => assert.ok(relL2(r.data, [...want.down, want.mid][i]!.data) < 1e-6, `residual ${i}`));
  await cn.dispose();

  const p = await tinyPipe();
  const base = { prompt: 'a bridge', width: 32, height: 32, steps: 3, seed: 4, controlnets: [{ model: m.cn, image: picture(32, 32) }] };
  const plain = await p.generate(base);
  const covering = await p.generate({ ...base, tiling: { window: 16, stride: 8 } });
  assert.deepEqual(covering.images[0]!.data, plain.images[0]!.data, 'one view covering the canvas = no tiling');
  const tiled = await p.generate({ ...base, width: 48, tiling: { window: 8, stride: 4, viewBatch: 2 } });
  assert.equal(tiled.settings.passes[0]!.views, 15);
});
