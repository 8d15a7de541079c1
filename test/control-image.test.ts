/**
 * Control images: OpenCV's Canny, resize and binary-map operations against OpenCV 4.6's own
 * outputs (test/data/opencv-reference.json, made by scripts/opencv-reference.cpp), Canny on
 * hand-checked pictures, and A1111's ControlNet preprocessing rules (resize modes, pixel
 * perfect, tile_resample, the inpaint −1 fill, edge-map resizing).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dilate, erode, hitMiss, otsu } from '../src/image/binary-map.js';
import { canny } from '../src/image/canny.js';
import { cvResize, type CvInterpolation } from '../src/image/cv-resize.js';
import {
  controlMapsToTensor,
  highQualityResize,
  pixelPerfectResolution,
  preprocessControl,
  resizeControlMap,
  roundHalfEven,
  sliderValue,
  PREPROCESSOR_SLIDERS,
} from '../src/pipeline/control-image.js';
import { repoRoot } from './helpers.js';

interface Case {
  op: string;
  image: number;
  low?: number;
  high?: number;
  interpolation?: CvInterpolation;
  kernel?: number[];
  outWidth: number;
  outHeight: number;
  output: string;
}
const ref = JSON.parse(readFileSync(join(repoRoot, 'test', 'data', 'opencv-reference.json'), 'utf8')) as { cases: Case[]; images: { width: number; height: number; channels: number; data: string }[] };
const images = ref.images.map((i) => ({ width: i.width, height: i.height, channels: i.channels, data: new Uint8Array(Buffer.from(i.data, 'base64')) }));
const bytes = (b64: string): Uint8Array => new Uint8Array(Buffer.from(b64, 'base64'));

test('Canny, resize (area, cubic, nearest), Otsu, erode, dilate and hit-or-miss equal OpenCV 4.6 byte for byte', () => {
  const counts: Record<string, number> = {};
  for (const c of ref.cases) {
    const img = images[c.image]!;
    const plane = { width: img.width, height: img.height, data: img.data };
    let out: Uint8Array;
    if (c.op === 'canny') out = canny(img, c.low!, c.high!);
    else if (c.op === 'resize') out = cvResize(img, c.outWidth, c.outHeight, c.interpolation!).data;
    else if (c.op === 'otsu') out = otsu(plane);
    else if (c.op === 'erode') out = erode(plane);
    else if (c.op === 'dilate') out = dilate(plane);
    else if (c.op === 'dilate-kernel') out = dilate(plane, c.kernel!);
    else out = hitMiss(plane, c.kernel!);
    assert.deepEqual(out, bytes(c.output), `${c.op} ${c.interpolation ?? ''} ${img.width}x${img.height}x${img.channels} → ${c.outWidth}x${c.outHeight}`);
    const key = c.op + (c.interpolation ? `-${c.interpolation}` : '');
    counts[key] = (counts[key] ?? 0) + 1;
  }
  assert.deepEqual(counts, { canny: 48, 'resize-area': 81, 'resize-cubic': 81, 'resize-nearest': 81, otsu: 6, erode: 6, dilate: 6, hitmiss: 6, 'dilate-kernel': 6 });
});

/** A w x h grey picture from a pixel function, as 1 or 3 channels. */
function picture(w: number, h: number, f: (x: number, y: number) => number | [number, number, number], channels = 1): { width: number; height: number; channels: number; data: Uint8Array } {
  const data = new Uint8Array(w * h * channels);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = f(x, y);
      for (let c = 0; c < channels; c++) data[(y * w + x) * channels + c] = Array.isArray(v) ? v[c]! : v;
    }
  }
  return { width: w, height: h, channels, data };
}

const edgeAt = (out: Uint8Array, w: number): string[] => Array.from({ length: out.length / w }, (_, y) => [...out.subarray(y * w, (y + 1) * w)].map((v) => (v ? '#' : '.')).join(''));

test('Canny on hand-checked pictures: a step edge marks its last dark column (OpenCV keeps the first of two equal maxima)', () => {
  // |dx| = 4 · 255 = 1020 at columns 3 and 4; suppression keeps m > left and m >= right: column 3 only.
  const vertical = canny(picture(8, 6, (x) => (x < 4 ? 0 : 255)), 100, 200);
  assert.deepEqual(edgeAt(vertical, 8), Array(6).fill('...#....'));
  const horizontal = canny(picture(6, 8, (_, y) => (y < 4 ? 0 : 255)), 100, 200);
  assert.deepEqual(edgeAt(horizontal, 6), ['......', '......', '......', '######', '......', '......', '......', '......']);
  // A step of 30: magnitude 120, a candidate above low = 100 but never above high = 200, and nothing strong to connect to.
  assert.ok(canny(picture(8, 6, (x) => (x < 4 ? 100 : 130)), 100, 200).every((v) => v === 0));
  // Above both thresholds once high drops below 120; thresholds given the wrong way round are swapped.
  assert.deepEqual(edgeAt(canny(picture(8, 6, (x) => (x < 4 ? 100 : 130)), 100, 119), 8), Array(6).fill('...#....'));
  assert.deepEqual(canny(picture(8, 6, (x) => (x < 4 ? 100 : 130)), 119, 100), canny(picture(8, 6, (x) => (x < 4 ? 100 : 130)), 100, 119));
  // Hysteresis: right of column 3 the picture steps 255 → 30 between rows 3 and 4 (a strong horizontal edge, kept
  // on row 3); below it the vertical step 0 → 30 is weak (magnitude 120) and survives only because its top
  // pixel (3, 5) touches the strong pixel (4, 4) that joins the two.
  const joined = canny(picture(8, 8, (x, y) => (x < 4 ? 0 : y < 4 ? 255 : 30)), 100, 200);
  assert.deepEqual(edgeAt(joined, 8), ['...#....', '...#....', '...#....', '....####', '....#...', '...#....', '...#....', '...#....']);
  assert.ok(canny(picture(8, 8, (x) => (x < 4 ? 0 : 30)), 100, 200).every((v) => v === 0));
  // Colour: each pixel takes the channel with the largest gradient (here green's strong step over red's weak one).
  const rgb = canny(picture(8, 6, (x) => (x < 4 ? [100, 0, 0] : [130, 255, 0]), 3), 100, 200);
  assert.deepEqual(edgeAt(rgb, 8), Array(6).fill('...#....'));
});

test('the canny preprocessor works at the processor resolution: short side scaled, edge-padded to 64, detected, cropped', () => {
  const img = { width: 48, height: 32, data: picture(48, 32, (x) => (x < 24 ? 20 : 200), 3).data };
  const map = preprocessControl(img, undefined, 'canny', { resolution: 32, thresholdA: 100, thresholdB: 200 });
  assert.equal(map.width, 48);
  assert.equal(map.height, 32);
  for (let y = 0; y < 32; y++) assert.deepEqual([...map.data.subarray(y * 48 * 3 + 23 * 3, y * 48 * 3 + 24 * 3)], [255, 255, 255]);
  assert.equal(map.data.filter((v) => v === 255).length, 32 * 3);
  // Resolution 64: the 48x32 picture is enlarged to 96x64 (cubic) first.
  const big = preprocessControl(img, undefined, 'canny', { resolution: 64, thresholdA: 100, thresholdB: 200 });
  assert.deepEqual([big.width, big.height], [96, 64]);
  assert.equal(sliderValue(PREPROCESSOR_SLIDERS.canny.resolution, -1), 512);
  assert.equal(sliderValue(PREPROCESSOR_SLIDERS.canny.a, 300), 100);
  assert.equal(sliderValue(PREPROCESSOR_SLIDERS.canny.b, 150), 150);
});

test('tile_resample shrinks by its rate (area) from 1.1 up; inpaint marks the repainted pixels −1', () => {
  const img = { width: 20, height: 10, data: picture(20, 10, (x, y) => (x * 7 + y * 13) % 256, 3).data };
  assert.equal(preprocessControl(img, undefined, 'tile_resample', { resolution: -1, thresholdA: 1.05, thresholdB: -1 }), img);
  const tile = preprocessControl(img, undefined, 'tile_resample', { resolution: -1, thresholdA: 2, thresholdB: -1 });
  assert.deepEqual([tile.width, tile.height], [10, 5]);
  // Whole-number ratio: each 2x2 block's mean, (sum + 2) >> 2.
  const p = (x: number, y: number): number => img.data[(y * 20 + x) * 3]!;
  assert.equal(tile.data[0], (p(0, 0) + p(1, 0) + p(0, 1) + p(1, 1) + 2) >> 2);
  assert.deepEqual([preprocessControl(img, undefined, 'tile_resample', { resolution: -1, thresholdA: 3, thresholdB: -1 }).width], [Math.trunc(20 / 3)]);

  const mask = new Uint8Array(200);
  mask[5] = 255;
  mask[6] = 128;
  mask[7] = 127;
  const inpaint = preprocessControl(img, mask, 'inpaint', { resolution: -1, thresholdA: -1, thresholdB: -1 });
  const t = controlMapsToTensor([inpaint]);
  assert.deepEqual(t.dims, [1, 3, 10, 20]);
  for (let c = 0; c < 3; c++) {
    assert.equal(t.data[c * 200 + 5], -1);
    assert.equal(t.data[c * 200 + 6], -1);
    assert.equal(t.data[c * 200 + 7], Math.fround(img.data[7 * 3 + c]! / 255));
  }
  assert.throws(() => preprocessControl(img, undefined, 'inpaint', { resolution: -1, thresholdA: -1, thresholdB: -1 }), /the inpaint preprocessor needs a mask/);
});

test("resize modes as the extension's detectmap_proc: crop the centre, fit inside on the border's median colour, or stretch", () => {
  const map = { width: 40, height: 20, data: picture(40, 20, (x, y) => [x * 5, y * 10, 77], 3).data };
  // Crop and resize to 20x20: scale max(20/20, 20/40) = 1, so the middle 20 columns.
  const crop = resizeControlMap(map, 20, 20, 'crop-and-resize');
  for (let y = 0; y < 20; y++) assert.deepEqual([...crop.data.subarray(y * 60, y * 60 + 60)], [...map.data.subarray((y * 40 + 10) * 3, (y * 40 + 30) * 3)]);
  // Resize and fill to 40x40: scale 1, the map centred in rows 10..29, the rest the median of its 120 border
  // pixels: red 0 ×22, then 5…190 twice → 60th and 61st values 95 and 100 → 97.5 → 97; green likewise 90, 100 → 95.
  const fill = resizeControlMap(map, 40, 40, 'resize-and-fill');
  assert.deepEqual([...fill.data.subarray(0, 3)], [97, 95, 77]);
  assert.deepEqual([...fill.data.subarray(10 * 120, 11 * 120)], [...map.data.subarray(0, 120)]);
  assert.deepEqual([...fill.data.subarray(30 * 120, 30 * 120 + 3)], [97, 95, 77]);
  // Just resize: a plain (area) resize to the size asked.
  assert.deepEqual(resizeControlMap(map, 20, 10, 'just-resize').data, cvResize({ ...map, channels: 3 }, 20, 10, 'area').data);
  // An inpaint map's filled border is repainted.
  const masked = resizeControlMap({ ...map, mask: new Uint8Array(800) }, 40, 40, 'resize-and-fill');
  assert.equal(masked.mask![0], 255);
  assert.equal(masked.mask![10 * 40], 0);
  // Pixel perfect: the short side as the resize mode will scale it (numpy's round, half to even).
  assert.equal(pixelPerfectResolution({ width: 768, height: 512 }, 512, 512, 'crop-and-resize'), 512);
  assert.equal(pixelPerfectResolution({ width: 768, height: 512 }, 512, 512, 'resize-and-fill'), 341);
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(3.5), 4);
});

test('edge maps stay one-pixel binary edges when resized (Otsu threshold and thinning, as high_quality_resize)', () => {
  const edges = canny(picture(32, 32, (x, y) => ((x - 16) ** 2 + (y - 16) ** 2 < 100 ? 230 : 20)), 100, 200);
  const map = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => edges[Math.floor(i / 3)]!) };
  for (const [w, h] of [[64, 64], [48, 40], [16, 16]] as const) {
    const out = highQualityResize(map, w, h);
    assert.deepEqual([out.width, out.height], [w, h]);
    assert.ok(out.data.every((v) => v === 0 || v === 255), `${w}x${h} stays binary`);
    const lit = out.data.filter((v) => v === 255).length / 3;
    // A ring of radius ≈ 10 scaled: about its circumference in pixels, not a thick band.
    const circumference = 2 * Math.PI * 10 * Math.sqrt((w * h) / (32 * 32));
    assert.ok(lit > 0.5 * circumference && lit < 2 * circumference, `${w}x${h}: ${lit} edge pixels for a ring of ${circumference.toFixed(0)}`);
  }
  // Segmentation-like maps (3–199 colours) resize by nearest neighbour.
  const seg = { width: 4, height: 2, data: Uint8Array.from([10, 0, 0, 20, 0, 0, 30, 0, 0, 40, 0, 0, 50, 0, 0, 60, 0, 0, 70, 0, 0, 80, 0, 0]) };
  assert.deepEqual([...highQualityResize(seg, 8, 4).data.subarray(0, 24).filter((_, i) => i % 3 === 0)], [10, 10, 20, 20, 30, 30, 40, 40]);
});
