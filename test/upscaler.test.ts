import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../src/index.js';
import type { CompactConfig } from '../src/models/upscaler/compact.js';
import type { EsrganConfig } from '../src/models/upscaler/esrgan.js';
import { randomUpscalerTensors } from '../src/models/upscaler/random.js';
import { planAxis } from '../src/models/upscaler/tiling.js';
import { loadUpscaler } from '../src/models/upscaler/upscaler.js';
import { rng } from '../src/models/random-model.js';
import { relL2 } from './helpers.js';
import { tensorsOf, writeTorchFile } from './torch-writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'todo-sd-upscaler-'));

// --- The reference: BasicSR's RRDBNet and Real-ESRGAN's SRVGGNetCompact, computed with plain loops
// from the PyTorch definitions (Conv2d 3x3 padding 1, LeakyReLU, PReLU, F.interpolate nearest,
// F.pixel_unshuffle, nn.PixelShuffle), in float64.

interface Planes {
  c: number;
  h: number;
  w: number;
  d: Float64Array;
}

type Weights = (key: string) => Float32Array;

function conv3x3(x: Planes, w: Float32Array, b: Float32Array): Planes {
  const o = b.length;
  const out = new Float64Array(o * x.h * x.w);
  for (let oc = 0; oc < o; oc++) {
    for (let y = 0; y < x.h; y++) {
      for (let xx = 0; xx < x.w; xx++) {
        let s = b[oc]!;
        for (let ic = 0; ic < x.c; ic++) {
          for (let ky = 0; ky < 3; ky++) {
            const sy = y + ky - 1;
            if (sy < 0 || sy >= x.h) continue;
            for (let kx = 0; kx < 3; kx++) {
              const sx = xx + kx - 1;
              if (sx < 0 || sx >= x.w) continue;
              s += w[((oc * x.c + ic) * 3 + ky) * 3 + kx]! * x.d[(ic * x.h + sy) * x.w + sx]!;
            }
          }
        }
        out[(oc * x.h + y) * x.w + xx] = s;
      }
    }
  }
  return { c: o, h: x.h, w: x.w, d: out };
}

const conv = (W: Weights, key: string, x: Planes): Planes => conv3x3(x, W(`${key}.weight`), W(`${key}.bias`));
const map = (x: Planes, f: (v: number, c: number) => number): Planes => ({ ...x, d: x.d.map((v, i) => f(v, Math.floor(i / (x.h * x.w)))) });
const lrelu = (x: Planes): Planes => map(x, (v) => (v >= 0 ? v : 0.2 * v));
const add = (a: Planes, b: Planes, k = 1): Planes => ({ ...a, d: a.d.map((v, i) => k * v + b.d[i]!) });
const cat = (xs: Planes[]): Planes => ({ c: xs.reduce((s, x) => s + x.c, 0), h: xs[0]!.h, w: xs[0]!.w, d: Float64Array.from(xs.flatMap((x) => [...x.d])) });

function nearest(x: Planes, s: number): Planes {
  const d = new Float64Array(x.c * x.h * s * x.w * s);
  for (let c = 0; c < x.c; c++) for (let y = 0; y < x.h * s; y++) for (let xx = 0; xx < x.w * s; xx++) d[(c * x.h * s + y) * x.w * s + xx] = x.d[(c * x.h + Math.floor(y / s)) * x.w + Math.floor(xx / s)]!;
  return { c: x.c, h: x.h * s, w: x.w * s, d };
}

function pixelUnshuffle(x: Planes, r: number): Planes {
  const [h, w] = [x.h / r, x.w / r];
  const d = new Float64Array(x.d.length);
  for (let c = 0; c < x.c; c++) for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) for (let y = 0; y < h; y++) for (let xx = 0; xx < w; xx++) d[((c * r * r + i * r + j) * h + y) * w + xx] = x.d[(c * x.h + y * r + i) * x.w + xx * r + j]!;
  return { c: x.c * r * r, h, w, d };
}

function pixelShuffle(x: Planes, r: number): Planes {
  const c = x.c / (r * r);
  const d = new Float64Array(x.d.length);
  for (let ch = 0; ch < c; ch++) for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) for (let y = 0; y < x.h; y++) for (let xx = 0; xx < x.w; xx++) d[(ch * x.h * r + y * r + i) * x.w * r + xx * r + j] = x.d[((ch * r * r + i * r + j) * x.h + y) * x.w + xx]!;
  return { c, h: x.h * r, w: x.w * r, d };
}

function rrdbnet(W: Weights, cfg: EsrganConfig, x: Planes): Planes {
  const rdb = (key: string, input: Planes): Planes => {
    const outs = [input];
    for (let k = 1; k <= 4; k++) outs.push(lrelu(conv(W, `${key}.conv${k}`, cat(outs))));
    return add(conv(W, `${key}.conv5`, cat(outs)), input, 0.2);
  };
  let feat = conv(W, 'conv_first', cfg.unshuffle > 1 ? pixelUnshuffle(x, cfg.unshuffle) : x);
  let trunk = feat;
  for (let i = 0; i < cfg.blocks; i++) {
    const input = trunk;
    for (let r = 1; r <= 3; r++) trunk = rdb(`body.${i}.rdb${r}`, trunk);
    trunk = add(trunk, input, 0.2);
  }
  feat = add(feat, conv(W, 'conv_body', trunk));
  for (let n = 1; n <= cfg.upsamples; n++) feat = lrelu(conv(W, `conv_up${n}`, nearest(feat, 2)));
  return conv(W, 'conv_last', lrelu(conv(W, 'conv_hr', feat)));
}

function srvgg(W: Weights, cfg: CompactConfig, x: Planes): Planes {
  let y = x;
  for (let i = 0; i <= cfg.convs; i++) {
    const slope = W(`body.${2 * i + 1}.weight`);
    y = map(conv(W, `body.${2 * i}`, y), (v, c) => (v >= 0 ? v : slope[c]! * v));
  }
  return add(pixelShuffle(conv(W, `body.${2 * cfg.convs + 2}`, y), cfg.scale), nearest(x, cfg.scale));
}

/** Reflection padding on the bottom and right (spandrel's pad_to_multiple), then the crop after the model. */
function padded(x: Planes, m: number, model: (p: Planes) => Planes, scale: number): Planes {
  const [H, Wd] = [Math.ceil(x.h / m) * m, Math.ceil(x.w / m) * m];
  const r = (i: number, n: number): number => (i < n ? i : 2 * (n - 1) - i);
  const p: Planes = { c: x.c, h: H, w: Wd, d: new Float64Array(x.c * H * Wd) };
  for (let c = 0; c < x.c; c++) for (let y = 0; y < H; y++) for (let xx = 0; xx < Wd; xx++) p.d[(c * H + y) * Wd + xx] = x.d[(c * x.h + r(y, x.h)) * x.w + r(xx, x.w)]!;
  const out = model(p);
  const [h, w] = [x.h * scale, x.w * scale];
  const d = new Float64Array(x.c * h * w);
  for (let c = 0; c < x.c; c++) for (let y = 0; y < h; y++) for (let xx = 0; xx < w; xx++) d[(c * h + y) * w + xx] = out.d[(c * out.h + y) * out.w + xx]!;
  return { c: x.c, h, w, d };
}

function image(h: number, w: number, seed: number): Planes {
  const next = rng(seed);
  return { c: 3, h, w, d: Float64Array.from({ length: 3 * h * w }, () => next()) };
}

const tensor = (p: Planes): { data: Float32Array; dims: number[] } => ({ data: Float32Array.from(p.d), dims: [1, p.c, p.h, p.w] });

const tinyEsrgan = (over: Partial<EsrganConfig> = {}): EsrganConfig => ({ architecture: 'ESRGAN', inChannels: 3, outChannels: 3, features: 8, blocks: 2, growth: 4, upsamples: 2, unshuffle: 1, scale: 4, ...over });
const tinyCompact: CompactConfig = { architecture: 'SRVGGNetCompact', inChannels: 3, outChannels: 3, features: 8, convs: 3, scale: 4 };

/** Writes random weights (BasicSR / Real-ESRGAN names) and returns the file and a reader by those names. */
function weights(name: string, cfg: EsrganConfig | CompactConfig, seed: number): { file: string; W: Weights } {
  const file = join(tmp, `${name}.safetensors`);
  writeSafetensors(file, randomUpscalerTensors(cfg, seed));
  const f = SafetensorsFile.open(file);
  return { file, W: (k) => f.readFloat32(k) };
}

/** BasicSR's names → the original ESRGAN's sequential names (model.0, model.1.sub.N.RDBr.convc.0, …). */
function originalName(key: string, cfg: EsrganConfig): string {
  const n = cfg.upsamples;
  return key
    .replace(/^conv_first\./, 'model.0.')
    .replace(/^body\.(\d+)\.rdb(\d)\.conv(\d)\./, 'model.1.sub.$1.RDB$2.conv$3.0.')
    .replace(/^conv_body\./, `model.1.sub.${cfg.blocks}.`)
    .replace(/^conv_up(\d)\./, (_, i: string) => `model.${3 * Number(i)}.`)
    .replace(/^conv_hr\./, `model.${3 * n + 2}.`)
    .replace(/^conv_last\./, `model.${3 * n + 4}.`);
}

function bsrganName(key: string): string {
  return key.replace(/^body\.(\d+)\.rdb(\d)\.conv(\d)\./, 'RRDB_trunk.$1.RDB$2.conv$3.').replace(/^conv_body\./, 'trunk_conv.').replace(/^conv_up(\d)\./, 'upconv$1.').replace(/^conv_hr\./, 'HRconv.');
}

test('ESRGAN x4 (RRDBNet): equal to the reference loops, from safetensors and from .pth in the original, BasicSR and BSRGAN layouts', async () => {
  const cfg = tinyEsrgan();
  const { file, W } = weights('esrgan-x4', cfg, 1);
  const x = image(8, 8, 2);
  const ref = rrdbnet(W, cfg, x);
  const up = await loadUpscaler(file);
  assert.deepEqual({ ...up.config }, cfg);
  const out = await up.forward(tensor(x), { tile: 0 });
  assert.deepEqual(out.dims, [1, 3, 32, 32]);
  assert.ok(relL2(out.data, ref.d) < 1e-4, `relative L2 ${relL2(out.data, ref.d)}`);
  await up.dispose();
  const st = SafetensorsFile.open(file);
  const variants: [string, (k: string) => string, 'zip' | 'legacy', string | undefined][] = [
    ['RRDB_ESRGAN_x4.pth', (k) => originalName(k, cfg), 'legacy', undefined],
    ['RealESRGAN_x4plus.pth', (k) => k, 'zip', 'params_ema'],
    ['BSRGAN.pth', bsrganName, 'zip', undefined],
  ];
  for (const [name, rename, format, wrap] of variants) {
    const p = join(tmp, name);
    writeTorchFile(p, tensorsOf(st, rename), { format, wrap });
    const u = await loadUpscaler(p);
    assert.deepEqual({ ...u.config }, cfg, name);
    assert.deepEqual((await u.forward(tensor(x), { tile: 0 })).data, out.data, `${name} gives the same output`);
    await u.dispose();
  }
});

test('Real-ESRGAN x2plus (pixel unshuffle in front): equal to the reference, odd sizes padded by reflection', async () => {
  const cfg = tinyEsrgan({ unshuffle: 2, scale: 2, blocks: 1 });
  const { file, W } = weights('esrgan-x2', cfg, 3);
  const up = await loadUpscaler(file);
  assert.equal(up.config.architecture === 'ESRGAN' && up.config.unshuffle, 2);
  assert.equal(up.scale, 2);
  for (const [h, w] of [
    [8, 8],
    [7, 9],
  ] as const) {
    const x = image(h, w, 4);
    const ref = padded(x, 2, (p) => rrdbnet(W, cfg, p), 2);
    const out = await up.forward(tensor(x), { tile: 0 });
    assert.deepEqual(out.dims, [1, 3, h * 2, w * 2]);
    assert.ok(relL2(out.data, ref.d) < 1e-4, `${h}x${w}: relative L2 ${relL2(out.data, ref.d)}`);
  }
  await up.dispose();
});

test('Real-ESRGAN SRVGGNetCompact: equal to the reference, from .pth with a params wrapper and a module. prefix', async () => {
  const { file, W } = weights('compact', tinyCompact, 5);
  const x = image(8, 6, 6);
  const ref = srvgg(W, tinyCompact, x);
  const p = join(tmp, 'realesr-general-x4v3.pth');
  writeTorchFile(p, tensorsOf(SafetensorsFile.open(file), (k) => `module.${k}`), { format: 'zip', wrap: 'params' });
  const up = await loadUpscaler(p);
  assert.deepEqual({ ...up.config }, tinyCompact);
  const out = await up.forward(tensor(x), { tile: 0 });
  assert.ok(relL2(out.data, ref.d) < 1e-4, `relative L2 ${relL2(out.data, ref.d)}`);
  // The 8-bit path: the same values clamped and rounded, as RGB.
  const rgb = new Uint8Array(8 * 6 * 3).map((_, i) => Math.round(x.d[(i % 3) * 48 + Math.floor(i / 3)]! * 255));
  const img = await up.upscale({ width: 6, height: 8, data: rgb });
  assert.equal(img.width, 24);
  assert.equal(img.height, 32);
  await up.dispose();
});

test('tiles: the tiled result equals the untiled one where the overlap covers the receptive field', async () => {
  // One RRDB: 1 + 15 + 1 convs at the input resolution, 4 more at 2x / 4x: a receptive radius under 19 pixels.
  const cfg = tinyEsrgan({ blocks: 1 });
  const { file } = weights('esrgan-tiles', cfg, 7);
  const up = await loadUpscaler(file);
  const x = tensor(image(70, 90, 8));
  const whole = await up.forward(x, { tile: 0 });
  const seen: number[] = [];
  const tiled = await up.forward(x, { tile: 48, overlap: 40, onTile: (done, total) => seen.push(done / total) });
  assert.ok(seen.length > 4 && seen[seen.length - 1] === 1, `progress ${seen.join(', ')}`);
  assert.ok(relL2(tiled.data, whole.data) < 1e-5, `tiled vs untiled relative L2 ${relL2(tiled.data, whole.data)}`);
  // A small overlap is not exact but stays close: no seams.
  const rough = await up.forward(x, { tile: 32, overlap: 8 });
  assert.ok(relL2(rough.data, whole.data) < 0.05, `small overlap relative L2 ${relL2(rough.data, whole.data)}`);
  await up.dispose();

  const unshuffled = tinyEsrgan({ blocks: 1, unshuffle: 2, scale: 2 });
  const u2 = await loadUpscaler(weights('esrgan-x2-tiles', unshuffled, 9).file);
  const y = tensor(image(61, 75, 10));
  const y0 = await u2.forward(y, { tile: 0 });
  assert.ok(relL2((await u2.forward(y, { tile: 50, overlap: 44 })).data, y0.data) < 1e-5);
  await u2.dispose();
});

test('tile plans: equal tiles, starts on the unshuffle grid, every pixel kept once and far from a cut', () => {
  for (const [size, tile, overlap, m] of [
    [540, 512, 32, 1],
    [960, 512, 32, 1],
    [1000, 192, 8, 2],
    [61, 50, 44, 2],
    [100, 100, 8, 1],
  ] as const) {
    const p = planAxis(size, { tile, overlap }, m);
    assert.ok(p.length <= Math.max(tile, m) && p.length % m === 0);
    assert.equal(p.keep[0]![0], 0);
    assert.equal(p.keep[p.keep.length - 1]![1], size);
    p.keep.forEach(([a, b], i) => {
      assert.equal(p.starts[i]! % m, 0);
      if (i > 0) assert.equal(a, p.keep[i - 1]![1]);
      if (i > 0) assert.ok(a - p.starts[i]! >= Math.floor(overlap / 2), `left margin of tile ${i}`);
      if (i < p.keep.length - 1) assert.ok(p.starts[i]! + p.length - b >= Math.floor(overlap / 2), `right margin of tile ${i}`);
    });
  }
  // 960x540 with 512 tiles: 2x2 tiles of 496x286, not four of 512x512.
  assert.equal(planAxis(540, { tile: 512, overlap: 32 }, 1).length, 286);
});

test('upscaler files that are no upscaler, or one todo-sd does not run, are refused by name', async () => {
  const f = join(tmp, 'plus.safetensors');
  writeSafetensors(f, { 'model.0.weight': { dtype: 'F32', shape: [8, 3, 3, 3], data: new Float32Array(216) }, 'model.1.sub.0.RDB1.conv1x1.weight': { dtype: 'F32', shape: [4, 8, 1, 1], data: new Float32Array(32) } });
  await assert.rejects(loadUpscaler(f), /ESRGAN\+ model/);
  const sd = join(tmp, 'sd.safetensors');
  writeSafetensors(sd, { 'model.diffusion_model.input_blocks.0.0.weight': { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
  await assert.rejects(loadUpscaler(sd), /not an upscaler todo-sd knows.*Stable Diffusion checkpoint/);
  const grey = join(tmp, 'grey.safetensors');
  writeSafetensors(grey, randomUpscalerTensors({ ...tinyCompact, inChannels: 1, outChannels: 1 }));
  await assert.rejects(loadUpscaler(grey), /1-channel images/);
});
