import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode } from 'fast-png';
import { decodeBase64, flattenImage, maskImage } from '../src/image/decode.js';
import { decodeImage } from '../src/io/image.js';
import { fitImage as resizeLanczos } from '../src/pipeline/img2img.js';
import { fitImage } from '../src/server/resize-mode.js';

const pngOf = (width: number, height: number, channels: number, data: number[]): Uint8Array => encode({ width, height, channels, data: Uint8Array.from(data) });

test('client pictures: RGBA flattened onto the background colour (white by default), grey replicated; data: URLs and plain base64 alike', async () => {
  const rgba = await decodeImage(pngOf(3, 1, 4, [255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 255, 51]));
  assert.deepEqual([...flattenImage(rgba).data], [255, 0, 0, 255, 255, 255, 204, 204, 255]);
  // A1111's img2img_background_color: 20% blue over #102030 → 0.2·(0, 0, 255) + 0.8·(16, 32, 48).
  assert.deepEqual([...flattenImage(rgba, '#102030').data], [255, 0, 0, 16, 32, 48, 13, 26, 89]);
  assert.deepEqual([...flattenImage(rgba, '#fff').data], [...flattenImage(rgba).data]);
  assert.throws(() => flattenImage(rgba, 'white'), /img2img_background_color must be a colour like #ffffff; got "white"/);
  assert.deepEqual([...flattenImage(await decodeImage(pngOf(1, 1, 1, [77]))).data], [77, 77, 77]);
  const b64 = Buffer.from(pngOf(1, 1, 1, [77])).toString('base64');
  assert.deepEqual(decodeBase64(`data:image/png;base64,${b64}`), decodeBase64(b64));
  assert.deepEqual(decodeBase64(`data:image/jpeg;base64,${b64}`), decodeBase64(b64));
});

test('masks: the alpha channel when it has transparency (as A1111), else the luminance', async () => {
  const painted = await decodeImage(pngOf(2, 1, 4, [0, 0, 0, 255, 0, 0, 0, 0]));
  assert.deepEqual([...maskImage(painted).data], [255, 255, 255, 0, 0, 0]);
  const opaque = await decodeImage(pngOf(2, 1, 3, [255, 255, 255, 255, 0, 0]));
  assert.deepEqual([...maskImage(opaque).data], [255, 255, 255, 76, 76, 76]);
});

test('Lanczos: a flat image stays flat; shrinking averages a checkerboard to grey', () => {
  const flat = { width: 5, height: 3, data: new Uint8Array(45).fill(90) };
  assert.ok([...resizeLanczos(flat, 13, 7).data].every((v) => v === 90));
  const checker = { width: 8, height: 8, data: new Uint8Array(192).map((_, i) => ((Math.floor(i / 3) % 8) + Math.floor(i / 24)) % 2 ? 255 : 0) };
  const small = resizeLanczos(checker, 2, 2);
  assert.ok([...small.data].every((v) => Math.abs(v - 127.5) < 8), String([...small.data]));
});

test('resize modes: just resize, crop and resize, resize and fill all give the asked size', () => {
  // A wide image whose left half is black and right half white.
  const img = { width: 8, height: 2, data: new Uint8Array(48).map((_, i) => (Math.floor(i / 3) % 8 < 4 ? 0 : 255)) };
  for (const mode of [0, 1, 2, 3]) {
    const out = fitImage(img, 4, 4, mode);
    assert.deepEqual([out.width, out.height, out.data.length], [4, 4, 48], `mode ${mode}`);
  }
  // Crop keeps the centre: the middle columns of a 2:1 image scaled to cover 4x4 are 2 black, 2 white.
  const crop = fitImage(img, 4, 4, 1);
  const row = [0, 1, 2, 3].map((x) => crop.data[x * 3]!);
  assert.ok(row[0]! < 128 && row[3]! > 128, String(row));
});
