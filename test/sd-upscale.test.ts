/**
 * SD upscale against AUTOMATIC1111's scripts/sd_upscale.py and modules/images.py (v1.10),
 * transcribed: split_grid's tile places, combine_grid's feathered paste (Pillow's masked paste
 * rounds (dst·(255 − m) + src·m) / 255 to nearest), the seeds of the tiles per batch, the
 * upscaler's target rounding; then the whole script on tiny-photo: every tile is the plain
 * img2img of its crop with its seed, the seam fix touches only its bands, errors.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RgbImage } from '../src/io/png.js';
import { fitImage } from '../src/pipeline/img2img.js';
import { optionsFromParameters } from '../src/pipeline/from-parameters.js';
import { parseParameters } from '../src/pipeline/parameters.js';
import { bandProfile, combineGrid, cropImage, splitGrid, tileSeed, upscaleImage } from '../src/pipeline/sd-upscale.js';
import { StableDiffusion, type GenerateOptions } from '../src/pipeline/stable-diffusion.js';
import { runCli, sharedDir } from './helpers.js';
import { decodePngRgb } from '../src/io/png.js';

/** images.split_grid, transcribed: [y, [x, …]] per row. */
function a1111SplitGrid(w: number, h: number, tileW: number, tileH: number, overlap: number): [number, number[]][] {
  const nonOverlapW = tileW - overlap;
  const nonOverlapH = tileH - overlap;
  const cols = Math.ceil((w - overlap) / nonOverlapW);
  const rows = Math.ceil((h - overlap) / nonOverlapH);
  const dx = cols > 1 ? (w - tileW) / (cols - 1) : 0;
  const dy = rows > 1 ? (h - tileH) / (rows - 1) : 0;
  const out: [number, number[]][] = [];
  for (let row = 0; row < rows; row++) {
    let y = Math.trunc(row * dy);
    if (y + tileH >= h) y = h - tileH;
    const xs: number[] = [];
    for (let col = 0; col < cols; col++) {
      let x = Math.trunc(col * dx);
      if (x + tileW >= w) x = w - tileW;
      xs.push(x);
    }
    out.push([y, xs]);
  }
  return out;
}

/** A picture whose every byte differs from its neighbours'. */
function pattern(width: number, height: number, salt: number): RgbImage {
  return { width, height, data: Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37 + salt * 101 + ((i * i) % 13)) % 256) };
}

describe('A1111 transcriptions', () => {
  it('split_grid: tile places', () => {
    for (const [w, h, tw, th, ov] of [
      [1024, 1024, 512, 512, 64],
      [3840, 2160, 512, 512, 64],
      [1000, 700, 512, 384, 32],
      [512, 512, 512, 512, 64],
      [80, 64, 32, 32, 8],
      [100, 40, 40, 40, 0],
    ]) {
      const ours = splitGrid(w!, h!, tw!, th!, ov!).map((r) => [r.y, r.xs]);
      assert.deepEqual(ours, a1111SplitGrid(w!, h!, tw!, th!, ov!), `${w}x${h} tiles ${tw}x${th} overlap ${ov}`);
    }
    assert.equal(splitGrid(3840, 2160, 512, 512, 64).flatMap((r) => r.xs).length, 9 * 5);
  });

  it('combine_grid: tiles cut from one picture give it back exactly', () => {
    const img = pattern(100, 70, 1);
    for (const [tw, th, ov] of [
      [40, 32, 8],
      [48, 48, 16],
      [100, 70, 0],
      [30, 30, 0],
    ]) {
      const grid = splitGrid(100, 70, tw!, th!, ov!);
      const tiles = grid.flatMap(({ y, xs }) => xs.map((x) => cropImage(img, x, y, tw!, th!)));
      assert.deepEqual(combineGrid(grid, tiles, 100, 70, ov!).data, img.data, `${tw}x${th} overlap ${ov}`);
    }
  });

  it("combine_grid: the feather is A1111's mask ⌊i·255/overlap⌋ through Pillow's rounding, per pixel", () => {
    // 2x2 tiles of 32 on 48x48 with overlap 16: tiles at 0 and 16 on both axes.
    const [W, T, O] = [48, 32, 16];
    const grid = splitGrid(W, W, T, T, O);
    assert.deepEqual(
      grid.map((r) => [r.y, r.xs]),
      [
        [0, [0, 16]],
        [16, [0, 16]],
      ],
    );
    const tiles = [0, 1, 2, 3].map((k) => pattern(T, T, k + 2));
    const out = combineGrid(grid, tiles, W, W, O);
    const blend = (dst: number, src: number, m: number): number => Math.round((dst * (255 - m) + src * m) / 255);
    const mask = (i: number): number => Math.floor((i * 255) / O);
    const px = (t: RgbImage, x: number, y: number, c: number): number => t.data[(y * T + x) * 3 + c]!;
    const rowPixel = (r: number, x: number, y: number, c: number): number => {
      const [a, b] = [tiles[2 * r]!, tiles[2 * r + 1]!];
      if (x < 16) return px(a, x, y, c);
      if (x < 32) return blend(px(a, x, y, c), px(b, x - 16, y, c), mask(x - 16));
      return px(b, x - 16, y, c);
    };
    for (let y = 0; y < W; y++) {
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < 3; c++) {
          const want = y < 16 ? rowPixel(0, x, y, c) : y < 32 ? blend(rowPixel(0, x, y, c), rowPixel(1, x, y - 16, c), mask(y - 16)) : rowPixel(1, x, y - 16, c);
          assert.equal(out.data[(y * W + x) * 3 + c], want, `pixel ${x},${y} channel ${c}`);
        }
      }
    }
  });

  it("tile seeds: A1111's loop (seed + place in the batch; the seed + 1 after each batch)", () => {
    for (const batchSize of [1, 2, 3, 4]) {
      const seeds: number[] = [];
      let seed = 100;
      for (let i = 0; i < 10; i += batchSize) {
        for (let j = 0; j < Math.min(batchSize, 10 - i); j++) seeds.push(seed + j);
        seed += 1;
      }
      assert.deepEqual(
        Array.from({ length: 10 }, (_, i) => tileSeed(100, i, batchSize)),
        seeds,
        `batch size ${batchSize}`,
      );
    }
  });

  it("upscaler: Lanczos to int(size · scale), then to A1111's target ⌊size · scale / 8⌋ · 8; a model's larger result is brought to it", async () => {
    const img = pattern(45, 37, 3);
    const lanczos = (i: RgbImage, s: number): RgbImage => fitImage(i, Math.trunc(i.width * s), Math.trunc(i.height * s));
    const up = await upscaleImage(img, 1.5, lanczos);
    assert.deepEqual(up, fitImage(fitImage(img, 67, 55), 64, 48));
    const calls: number[] = [];
    const model = (i: RgbImage, s: number): RgbImage => {
      calls.push(s);
      return fitImage(i, i.width * 4, i.height * 4);
    };
    const byModel = await upscaleImage(img, 2, model);
    assert.deepEqual([byModel.width, byModel.height, calls], [88, 72, [2]]);
  });

  it("Ultimate SD upscale's band mask rises from its edges to its middle and falls again", () => {
    const p = bandProfile(64);
    assert.equal(p.length, 64);
    assert.ok(p[0]! <= 8 && p[63]! <= 8, `edges ${p[0]}, ${p[63]}`);
    assert.ok(p[31]! >= 240 && p[32]! >= 240, `middle ${p[31]}, ${p[32]}`);
    for (let i = 1; i < 31; i++) assert.ok(p[i]! >= p[i - 1]!, `rises at ${i}`);
    for (let i = 33; i < 64; i++) assert.ok(p[i]! <= p[i - 1]!, `falls at ${i}`);
  });
});

describe('SD upscale in the pipeline (tiny-photo)', () => {
  let pipe: StableDiffusion;
  let source: RgbImage;
  // Two steps at strength 0.5: one denoising step per tile keeps the tests fast.
  const base: GenerateOptions = { prompt: 'a field', steps: 2, sampler: 'ddim', cfg: 7.5, strength: 0.5, seed: 40, width: 32, height: 32 };
  before(async () => {
    pipe = await StableDiffusion.load(join(sharedDir, 'models', 'tiny-photo'));
    source = (await pipe.generate({ prompt: 'a field', width: 32, height: 24, steps: 4, seed: 1, sampler: 'ddim' })).images[0]!;
  });
  after(() => pipe.dispose());

  for (const batchSize of [1, 2]) {
    it(`every tile is the plain img2img of its crop with its own seed (batch size ${batchSize})`, async () => {
      const r = await pipe.generate({ ...base, initImage: source, sdUpscale: { scale: 2, overlap: 8, batchSize } });
      const img = r.images[0]!;
      // 64x48 in tiles of 32 with overlap 8: x 0, 16, 32; y 0, 16.
      assert.deepEqual([img.width, img.height, r.settings.sdUpscale!.tiles], [64, 48, 6]);
      const upscaled = fitImage(source, 64, 48);
      // The part of each tile that no later tile covers: [x, y, width, height] inside the tile.
      for (const [index, x, y, keep] of [
        [0, 0, 0, [0, 0, 16, 16]],
        [4, 16, 16, [8, 8, 8, 24]],
      ] as const) {
        const alone = await pipe.generate({ ...base, initImage: cropImage(upscaled, x, y, 32, 32), seed: tileSeed(40, index, batchSize) });
        const [kx, ky, kw, kh] = keep;
        assert.deepEqual(cropImage(img, x + kx, y + ky, kw, kh), cropImage(alone.images[0]!, kx, ky, kw, kh), `tile ${index}`);
      }
      // A1111's infotext: the first tile's parameters plus the script's keys; read back with the image.
      const parsed = parseParameters(img.parameters);
      assert.equal(parsed.settings.Size, '32x32');
      assert.equal(parsed.settings.Seed, '40');
      const back = optionsFromParameters(parsed, [0, 1]);
      assert.deepEqual(back.imageToImage?.sdUpscale, { scale: 2, overlap: 8, upscaler: 'lanczos', batchSize: batchSize > 1 ? batchSize : undefined });
      assert.equal(back.imageToImage?.strength, 0.5);
    });
  }

  it('is deterministic per seed; a batch count upscales again from seed + 1', async () => {
    const o = { ...base, initImage: source, sdUpscale: { scale: 2, overlap: 8 } };
    const a = await pipe.generate(o);
    const b = await pipe.generate({ ...o, batch: 2 });
    assert.deepEqual(b.images[0]!.data, a.images[0]!.data);
    const next = await pipe.generate({ ...o, seed: 41 });
    assert.deepEqual(b.images[1]!.data, next.images[0]!.data);
    assert.deepEqual(
      b.images.map((i) => i.seed),
      [40, 41],
    );
  });

  it('the band-pass seam fix redraws only the bands across the seams', async () => {
    const o = { ...base, initImage: source, sdUpscale: { scale: 2, overlap: 8 } };
    const plain = (await pipe.generate(o)).images[0]!;
    const steps: number[] = [];
    const fixed = await pipe.generate({ ...o, sdUpscale: { ...o.sdUpscale, seamFix: { mode: 'band', width: 8, padding: 8, denoise: 0.5 } } }, { onStep: (s) => s.phase === 'decode' && steps.push(s.tile!.index) });
    assert.deepEqual(steps, [...Array(6 + 2 + 1).keys()], 'six tiles, then two column seams and one row seam');
    // Seams in the middle of the overlaps: columns 16 + 4 and 32 + 4, row 16 + 4; bands 8 wide.
    const inBand = (v: number, centres: number[]): boolean => centres.some((c) => v >= c - 4 && v < c + 4);
    let changed = 0;
    for (let y = 0; y < 48; y++) {
      for (let x = 0; x < 64; x++) {
        const p = (y * 64 + x) * 3;
        const same = [0, 1, 2].every((c) => fixed.images[0]!.data[p + c] === plain.data[p + c]);
        if (!same) changed++;
        if (!inBand(x, [20, 36]) && !inBand(y, [20])) assert.ok(same, `pixel ${x},${y} outside the bands changed`);
      }
    }
    assert.ok(changed > 0, 'the bands were redrawn');
  });

  it('a model upscaler plugs in by function and is named in the infotext', async () => {
    const r = await pipe.generate({ ...base, initImage: source, sdUpscale: { scale: 2, overlap: 8, upscaler: { name: 'ESRGAN_4x', upscale: (i) => fitImage(i, i.width * 4, i.height * 4) } } });
    assert.deepEqual([r.images[0]!.width, r.images[0]!.height], [64, 48]);
    assert.match(r.images[0]!.parameters, /SD upscale upscaler: ESRGAN_4x/);
  });

  it('refuses what cannot work, before any work', async () => {
    const o = { ...base, initImage: source };
    await assert.rejects(pipe.generate({ ...o, width: 96, sdUpscale: { scale: 2, overlap: 8 } }), /SD upscale tiles of 96x32 are larger than the upscaled picture \(64x48\): lower the tile size \(width\/height\) or raise the scale/);
    await assert.rejects(pipe.generate({ ...o, sdUpscale: { scale: 2, overlap: 32 } }), /overlap must be an integer of pixels from 0 to less than the tile \(32x32\); got 32/);
    await assert.rejects(pipe.generate({ ...base, sdUpscale: { scale: 2, overlap: 8 } }), /give an init image/);
    await assert.rejects(pipe.generate({ ...o, tiling: {}, sdUpscale: { scale: 2, overlap: 8 } }), /SD upscale and Tiled Diffusion do not combine/);
    await assert.rejects(pipe.generate({ ...o, sdUpscale: { scale: 0.5 } }), /scale must be a number from 1 to 8/);
    await assert.rejects(pipe.generate({ ...o, sdUpscale: { scale: 2, overlap: 8, upscaler: 'esrgan' as never } }), /unknown SD upscale upscaler "esrgan"/);
    await assert.rejects(pipe.generate({ ...o, sdUpscale: { scale: 2, overlap: 8, seamFix: { mode: 'band', width: 64, denoise: 0.5 } } }), /seam fix band \(64 px \+ 2 x 16 px padding\) is wider than the upscaled picture/);
    await assert.rejects(pipe.generate({ ...o, sdUpscale: { scale: 2, overlap: 8, seamFix: { mode: 'band', width: 8 } } }), /seam fix denoise 0.35 with 2 steps runs no denoising step/);
  });
});

describe('CLI', () => {
  it('generate --sd-upscale writes the upscaled PNG; --from-png with the original makes it again; stray flags fail', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'todo-sd-sd-upscale-'));
    const common = ['--prompt', 'a field', '--steps', '2', '--seed', '1', '--sampler', 'ddim'];
    assert.equal(runCli(tmp, 'generate', ...common, '--width', '32', '--height', '24', '--out', 'src.png').code, 0);
    const r = runCli(tmp, 'generate', ...common, '--init-image', 'src.png', '--sd-upscale', '2', '--sd-upscale-overlap', '8', '--width', '32', '--height', '32', '--strength', '0.5', '--out', 'big.png', '--json');
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { sdUpscale: { width: number; height: number; tiles: number } };
    assert.deepEqual([summary.sdUpscale.width, summary.sdUpscale.height, summary.sdUpscale.tiles], [64, 48, 6]);
    const big = readFileSync(join(tmp, 'big.png'));
    assert.deepEqual([decodePngRgb(big, 'big.png').width, decodePngRgb(big, 'big.png').height], [64, 48]);
    const again = runCli(tmp, 'generate', '--from-png', 'big.png', '--init-image', 'src.png', '--out', 'again.png');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(readFileSync(join(tmp, 'again.png')), big);
    const stray = runCli(tmp, 'generate', '--prompt', 'x', '--seam-fix', 'band', '--out', 'x.png');
    assert.equal(stray.code, 1);
    assert.match(stray.stderr, /--seam-fix belongs to SD upscale: add --sd-upscale SCALE \(and --init-image\)/);
    assert.ok(!existsSync(join(tmp, 'x.png')));
  });
});

describe('SD upscale infotext', () => {
  it("reads A1111's keys; without the scale (A1111 does not write it) says what to give", () => {
    const a1111 = 'a harbour\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, Model: sd15, Denoising strength: 0.3, SD upscale overlap: 64, SD upscale upscaler: Lanczos, Version: v1.10.1';
    const r = optionsFromParameters(parseParameters(a1111), [0]);
    assert.equal(r.imageToImage?.sdUpscale, undefined);
    assert.deepEqual(
      r.notApplied.filter((k) => k.startsWith('SD upscale')),
      ['SD upscale overlap (A1111 does not record the scale: give it again)', 'SD upscale upscaler (A1111 does not record the scale: give it again)'],
    );
    const ours = optionsFromParameters(parseParameters(a1111.replace(', Version', ', SD upscale scale: 4, Version')), [0]);
    assert.deepEqual(ours.imageToImage?.sdUpscale, { scale: 4, overlap: 64, upscaler: 'lanczos', batchSize: undefined });
    const esrgan = optionsFromParameters(parseParameters(a1111.replace('upscaler: Lanczos', 'upscaler: R-ESRGAN 4x+')), [0]);
    assert.match(esrgan.notApplied.join('; '), /upscaler "R-ESRGAN 4x\+" is not offered here \(None, Lanczos\)/);
  });
});
