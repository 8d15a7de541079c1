/**
 * ControlNet in the pipeline, checked against diffusers' rules transcribed: the keep mask of
 * control_guidance_start / end, batch and guidance halves of the control image, guess mode on
 * the conditional half, MultiControlNetModel's sum; A1111's control modes; bad input; the PNG
 * infotext as the ControlNet extension writes it, read back by --from-png.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeImage } from '../src/io/image.js';
import { encodePng, readPngText } from '../src/io/png.js';
import { ControlNet, downResidualCount } from '../src/models/controlnet.js';
import { controlNetKeep, ControlNetPass, resolveControlUnit, softInjectionScales, type ControlNetUnit } from '../src/pipeline/controlnet.js';
import { controlNetsFromInfotext } from '../src/pipeline/controlnet-infotext.js';
import { controlMapsToTensor, resizeControlMap } from '../src/pipeline/control-image.js';
import { parseParameters } from '../src/pipeline/parameters.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import type { Tensor } from '../src/tensor.js';
import { controlNetModels, editControlNet } from './controlnet-models.js';
import { relL2, runCli } from './helpers.js';

const m = controlNetModels();
const tmp = mkdtempSync(join(tmpdir(), 'todo-sd-cn-pipe-'));
const stripes = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => ((i / 3) % 32 < 16 ? 30 : 220)) };

let pipe: StableDiffusion | undefined;
async function tinyPipe(): Promise<StableDiffusion> {
  pipe ??= await StableDiffusion.load(m.tiny);
  return pipe;
}

test("the keep mask is diffusers' rule: a unit acts at step i of n unless i/n < start or (i + 1)/n > end", async () => {
  // StableDiffusionControlNetPipeline: keeps = 1.0 - float(i / len(timesteps) < s or (i + 1) / len(timesteps) > e)
  const diffusers = (i: number, n: number, s: number, e: number): boolean => 1.0 - Number(i / n < s || (i + 1) / n > e) === 1;
  for (const n of [1, 4, 10, 19]) {
    for (const [s, e] of [[0, 1], [0.2, 0.7], [0.5, 1], [0, 0.35], [0.1, 0.9]] as const) {
      for (let i = 0; i < n; i++) assert.equal(controlNetKeep(i, n, s, e), diffusers(i, n, s, e), `i=${i} n=${n} s=${s} e=${e}`);
    }
  }
  // In a generation: DDIM, 10 steps, start 0.2, end 0.7 → the ControlNet runs at steps 2…6 only.
  const p = await tinyPipe();
  const cn = await p.loadControlNet(m.cn);
  const seen: number[] = [];
  const forward = cn.forward.bind(cn);
  cn.forward = (sample, t, ...rest) => {
    seen.push(t);
    return forward(sample, t, ...rest);
  };
  const r = await p.generate({ prompt: 'a cat', width: 32, height: 32, steps: 10, seed: 1, sampler: 'ddim', controlnets: [{ model: cn, image: stripes, start: 0.2, end: 0.7 }] }, {});
  cn.forward = forward;
  const ddimTimesteps = [901, 801, 701, 601, 501, 401, 301, 201, 101, 1];
  assert.deepEqual(seen, ddimTimesteps.slice(2, 7));
  assert.equal(r.settings.controlnets[0]!.start, 0.2);
});

test('a ControlNet with zeroed convs leaves the picture unchanged; a real one changes it; scale 0 is no ControlNet', async () => {
  const p = await tinyPipe();
  const base = { prompt: 'a cat', negativePrompt: 'blurry', width: 32, height: 32, steps: 3, seed: 4, batch: 2 };
  const plain = await p.generate(base);
  const zeroed = editControlNet(m.cn, join(tmp, 'zeroed'), (name, data) => (/^controlnet_(down_blocks|mid_block)/.test(name) ? new Float32Array(data.length) : undefined));
  const same = await p.generate({ ...base, controlnets: [{ model: zeroed, image: stripes }] });
  same.images.forEach((img, i) => assert.deepEqual(img.data, plain.images[i]!.data));
  const off = await p.generate({ ...base, controlnets: [{ model: m.cn, image: stripes, scale: 0 }] });
  off.images.forEach((img, i) => assert.deepEqual(img.data, plain.images[i]!.data));
  const on = await p.generate({ ...base, controlnets: [{ model: m.cn, image: stripes }] });
  assert.notDeepEqual(on.images[0]!.data, plain.images[0]!.data);
});

test('SDXL: a ControlNet takes the pooled text and time ids (the conditional half of them in guess mode); zeroed convs change nothing', async () => {
  const xl = await StableDiffusion.load(m.sdxl);
  const base = { prompt: 'a cat', width: 32, height: 32, steps: 2, seed: 3 };
  const plain = await xl.generate(base);
  const zeroed = editControlNet(m.cnXl, join(tmp, 'zeroed-xl'), (name, data) => (/^controlnet_(down_blocks|mid_block)/.test(name) ? new Float32Array(data.length) : undefined));
  assert.deepEqual((await xl.generate({ ...base, controlnets: [{ model: zeroed, image: stripes }] })).images[0]!.data, plain.images[0]!.data);
  // The diffusers-named single file, its config completed from this U-Net; guess mode runs it on the conditional half.
  const guided = await xl.generate({ ...base, controlnets: [{ model: m.cnXlFile, image: stripes, guessMode: true }] });
  assert.notDeepEqual(guided.images[0]!.data, plain.images[0]!.data);
  assert.match(guided.images[0]!.parameters, /ControlNet 0: "Module: none, Model: diffusers_xl_tiny \[[0-9a-f]{8}\], .*Guess Mode: True"/);
  await xl.dispose();
});

function randomTensor(dims: number[], seed: number): Tensor {
  let s = seed;
  return { data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1), dims };
}

test('several units sum their residuals; guess mode and "ControlNet is more important" act on the conditional half only', async () => {
  const cn = await ControlNet.load(m.cn);
  const other = await ControlNet.load(editControlNet(m.cn, join(tmp, 'other'), (_, data) => data.map((v) => v * 0.9)));
  const target = { width: 16, height: 16 };
  const unit = (model: ControlNet, u: Partial<ControlNetUnit> = {}) => resolveControlUnit({ model, image: stripes, ...u }, model, 0, target, {});
  const batch = 2;
  const pass = (units: ReturnType<typeof unit>[]): ControlNetPass => new ControlNetPass(units, target, batch, 4, cn.config, { method: 'dense' }, false);
  const input = randomTensor([2 * batch, 4, 8, 8], 1);
  const conditioning = { encoderHiddenStates: randomTensor([2 * batch, 3, 32], 2) };
  const step = { index: 0, timestep: 600, input, conditioning, guided: true, attentionActive: true };
  const a = await pass([unit(cn, { scale: 0.8 })]).residuals(step);
  const b = await pass([unit(other, { scale: 1.3 })]).residuals(step);
  const both = await pass([unit(cn, { scale: 0.8 }), unit(other, { scale: 1.3 })]).residuals(step);
  [...both.down, both.mid!].forEach((t, i) => assert.ok(relL2(t.data, [...a.down, a.mid!][i]!.data.map((v, k) => v + [...b.down, b.mid!][i]!.data[k]!)) < 1e-6));

  // Guess mode: zeros for the unconditional rows; the conditional rows as the ControlNet gives them on those rows alone.
  const guess = await pass([unit(cn, { guessMode: true })]).residuals(step);
  const half = (t: Tensor): Tensor => ({ data: t.data.subarray(t.data.length / 2), dims: [batch, ...t.dims.slice(1)] });
  const image = { data: new Float32Array(batch * 3 * 16 * 16), dims: [batch, 3, 16, 16] };
  const one = controlMapsToTensor([resizeControlMap(unit(cn).map, 16, 16, 'crop-and-resize')]).data;
  image.data.set(one, 0);
  image.data.set(one, one.length);
  const direct = await cn.forward(half(input), 600, half(conditioning.encoderHiddenStates), image, { guessMode: true });
  [...guess.down, guess.mid!].forEach((t, i) => {
    assert.ok(t.data.subarray(0, t.data.length / 2).every((v) => v === 0), `residual ${i}: unconditional half`);
    assert.ok(relL2(t.data.subarray(t.data.length / 2), [...direct.down, direct.mid][i]!.data) < 1e-6, `residual ${i}: conditional half`);
  });
  // A1111: "My prompt is more important" → weight · 0.825^(12 − i) on both halves; "ControlNet is more important" → the same on the conditional half.
  const n = downResidualCount(cn.config) + 1;
  assert.deepEqual(softInjectionScales(13, 1).map((v) => v.toFixed(6)), Array.from({ length: 13 }, (_, i) => (0.825 ** (12 - i)).toFixed(6)));
  const soft = await pass([unit(cn, { controlMode: 'prompt' })]).residuals(step);
  const balanced = await pass([unit(cn)]).residuals(step);
  [...soft.down, soft.mid!].forEach((t, i) => assert.ok(relL2(t.data, [...balanced.down, balanced.mid!][i]!.data.map((v) => v * 0.825 ** (12 - i))) < 1e-6, `soft residual ${i}`));
  const controlFirst = await pass([unit(cn, { controlMode: 'controlnet' })]).residuals(step);
  [...controlFirst.down, controlFirst.mid!].forEach((t, i) => {
    assert.ok(t.data.subarray(0, t.data.length / 2).every((v) => v === 0));
    assert.ok(relL2(t.data.subarray(t.data.length / 2), [...soft.down, soft.mid!][i]!.data.subarray(t.data.length / 2)) < 1e-6);
  });
  assert.equal(n, 5);
  assert.throws(() => unit(cn, { guessMode: true, controlMode: 'prompt' }), /guessMode \(diffusers\) and controlMode "prompt" \(A1111\) are two ways/);
  await Promise.all([cn.dispose(), other.dispose()]);
});

test('wrong family, bad units and missing images are refused with the fix, before any step runs', async () => {
  const p = await tinyPipe();
  const base = { prompt: 'x', width: 32, height: 32, steps: 2, seed: 1 };
  await assert.rejects(p.generate({ ...base, controlnets: [{ model: m.cnXl, image: stripes }] }), /ControlNet controlnet-sdxl-tiny is for a model with cross_attention_dim 24 \(text_time\), but the model is a model with cross_attention_dim 32: use a ControlNet made for this model's family/);
  const xl = await StableDiffusion.load(m.sdxl);
  await assert.rejects(xl.generate({ ...base, controlnets: [{ model: m.cn, image: stripes }] }), /ControlNet controlnet-tiny is for a model with cross_attention_dim 32, but the model is a model with cross_attention_dim 24 \(text_time\)/);
  await xl.dispose();
  await assert.rejects(p.generate({ ...base, controlnets: [{ model: m.cn }] }), /controlnets\[0\]: no control image: give the unit an image/);
  await assert.rejects(p.generate({ ...base, controlnets: [{ model: m.cn, image: stripes, start: 0.6, end: 0.4 }] }), /start \(0\.6\) must be below end \(0\.4\)/);
  await assert.rejects(p.generate({ ...base, controlnets: [{ model: m.cn, image: stripes, preprocessor: 'depth' as never }] }), /unknown preprocessor "depth"/);
  await assert.rejects(p.generate({ ...base, controlnets: [{ model: m.cn, image: stripes, preprocessor: 'inpaint' }] }), /the inpaint preprocessor needs a mask/);
  await assert.rejects(p.generate({ ...base, controlnets: [{ model: m.cn, image: stripes, preprocessor: 'inpaint_only', mask: stripes }] }), /inpaint_only is offered for inpainting/);
  await assert.rejects(p.generate({ ...base, controlnets: [{ model: join(tmp, 'nope') }] }), /model folder .* not found/);
});

test('img2img and inpainting: a unit without an image takes the init image (and the mask, for inpaint); the hires pass runs its ControlNet at the larger size', async () => {
  const p = await tinyPipe();
  const mask = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (Math.floor(i / 3) % 32 < 8 ? 255 : 0)) };
  const r = await p.generate({ prompt: 'x', initImage: stripes, strength: 0.5, steps: 4, seed: 2, mask: { image: mask }, controlnets: [{ model: m.cn, preprocessor: 'inpaint' }, { model: m.cn, preprocessor: 'tile_resample', thresholdA: 2 }] });
  assert.deepEqual(r.settings.controlnets.map((c) => c.preprocessor), ['inpaint', 'tile_resample']);
  const seen: number[][] = [];
  const cn = await p.loadControlNet(m.cn);
  const forward = cn.forward.bind(cn);
  cn.forward = (sample, ...rest) => {
    seen.push([...sample.dims]);
    return forward(sample, ...rest);
  };
  await p.generate({ prompt: 'x', width: 32, height: 32, steps: 2, seed: 2, cfg: 1, sampler: 'ddim', hires: { scale: 1.5, denoise: 0.5, upscaler: 'latent', steps: 2 }, controlnets: [{ model: cn, image: stripes }] });
  cn.forward = forward;
  // Two DDIM steps at 16x16 latents, then ⌊2 · 0.5⌋ = 1 step at 24x24.
  assert.deepEqual(seen, [[1, 4, 16, 16], [1, 4, 16, 16], [1, 4, 24, 24]]);
});

test("the PNG carries the ControlNet extension's infotext, and it reads back", async () => {
  const p = await tinyPipe();
  const r = await p.generate({ prompt: 'a cat', width: 32, height: 32, steps: 2, seed: 9, controlnets: [{ model: m.cnFile, image: stripes, preprocessor: 'canny', scale: 0.75, start: 0.1, end: 0.9, controlMode: 'prompt', resizeMode: 'resize-and-fill', pixelPerfect: true }] });
  const settings = parseParameters(r.images[0]!.parameters).settings;
  assert.match(settings['ControlNet 0']!, /^Module: canny, Model: control_tiny_canny \[[0-9a-f]{8}\], Weight: 0\.75, Resize Mode: Resize and Fill, Processor Res: 32, Threshold A: 100\.0, Threshold B: 200\.0, Guidance Start: 0\.1, Guidance End: 0\.9, Pixel Perfect: True, Control Mode: My prompt is more important$/);
  const { units } = controlNetsFromInfotext(settings);
  assert.deepEqual(units, [{ model: 'control_tiny_canny', preprocessor: 'canny', scale: 0.75, resizeMode: 'resize-and-fill', processorRes: 32, thresholdA: 100, thresholdB: 200, start: 0.1, end: 0.9, pixelPerfect: true, controlMode: 'prompt', guessMode: false }]);
  // As A1111 writes them (inpaint under its label; integers for the floats some versions give).
  const a1111 = controlNetsFromInfotext({ 'ControlNet 1': 'Module: inpaint_global_harmonious, Model: control_v11p_sd15_inpaint [ebff9138], Weight: 1, Resize Mode: Just Resize, Processor Res: -1, Threshold A: -1, Threshold B: -1, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: ControlNet is more important', 'ControlNet 0': 'Module: none, Model: control_v11f1e_sd15_tile [a371b31b], Weight: 0.5' });
  assert.deepEqual(a1111.keys, ['ControlNet 0', 'ControlNet 1']);
  assert.equal(a1111.units[1]!.preprocessor, 'inpaint');
  assert.equal(a1111.units[1]!.model, 'control_v11p_sd15_inpaint');
  assert.equal(a1111.units[1]!.controlMode, 'controlnet');
  assert.equal(a1111.units[0]!.scale, 0.5);
  assert.throws(() => controlNetsFromInfotext({ 'ControlNet 0': 'Module: depth_midas, Model: control_v11f1p_sd15_depth [cfd03158]' }), /uses preprocessor "depth_midas", which todo-sd does not have/);
});

test('CLI: --controlnet writes the unit into the PNG; --from-png with --control-image makes the same picture; a wrong family exits non-zero and writes nothing', async () => {
  writeFileSync(join(tmp, 'stripes.png'), encodePng(stripes));
  const out = join(tmp, 'cn.png');
  const first = runCli(tmp, 'generate', '--model', m.tiny, '--prompt', 'a cat', '-W', '32', '-H', '32', '--steps', '2', '--seed', '5', '--controlnet', `${m.cn}:stripes.png:0.8:0:0.5`, '--control-preprocessor', 'canny', '--control-res', '64', '--out', out);
  assert.equal(first.code, 0, first.stderr);
  const text = readPngText(readFileSync(out)).parameters!;
  assert.match(text, /ControlNet 0: "Module: canny, Model: controlnet-tiny \[[0-9a-f]{8}\], Weight: 0\.8, Resize Mode: Crop and Resize, Processor Res: 64, Threshold A: 100\.0, Threshold B: 200\.0, Guidance Start: 0\.0, Guidance End: 0\.5,/);
  const again = join(tmp, 'again.png');
  const second = runCli(tmp, 'generate', '--model', m.tiny, '--from-png', out, '--control-image', 'stripes.png', '--controlnet-dir', m.dir, '--out', again);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual((await decodeImage(readFileSync(again))).data, (await decodeImage(readFileSync(out))).data);
  // --controlnet-dir finds the name as a folder here; as a single file of the same weights, the hash differs and a warning says so.
  assert.doesNotMatch(second.stderr, /ControlNet 0 was made with/);
  const noImage = runCli(tmp, 'generate', '--model', m.tiny, '--from-png', out, '--out', join(tmp, 'no-image.png'));
  assert.equal(noImage.code, 0, noImage.stderr);
  assert.match(noImage.stderr, /settings not applied: ControlNet 0 \(the image was made with ControlNet: give --control-image for each unit/);

  const wrong = join(tmp, 'wrong.png');
  const bad = runCli(tmp, 'generate', '--model', m.tiny, '--prompt', 'x', '-W', '32', '-H', '32', '--steps', '1', '--controlnet', `${m.cnXl}:stripes.png`, '--out', wrong);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /is for a model with cross_attention_dim 24 \(text_time\), but the model is/);
  assert.equal(existsSync(wrong), false);
  const spec = runCli(tmp, 'generate', '--model', m.tiny, '--prompt', 'x', '--controlnet', 'only-a-model', '--out', wrong);
  assert.notEqual(spec.code, 0);
  assert.match(spec.stderr, /--controlnet only-a-model: write MODEL:IMAGE/);
  const lists = runCli(tmp, 'generate', '--model', m.tiny, '--prompt', 'x', '--controlnet', `${m.cn}:stripes.png`, '--control-preprocessor', 'canny,none', '--out', wrong);
  assert.notEqual(lists.code, 0);
  assert.match(lists.stderr, /--control-preprocessor canny,none: give one value for every unit, or one per unit \(1 ControlNet unit\)/);
});

test.after(async () => {
  await pipe?.dispose();
});
