import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode } from 'fast-png';
import sharp, { type Sharp } from 'sharp';
import { decodeImage, encodePng, readImageText, UserError } from '../src/index.js';

const rgbOf = (width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): Buffer => {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * 3);
  return data;
};
const raw = (width: number, height: number, data: Buffer): Sharp => sharp(data, { raw: { width, height, channels: 3 } });
/** The mean colour of a block of pixels. */
function mean(img: { width: number; data: Uint8Array }, x0: number, y0: number, x1: number, y1: number): number[] {
  const sum = [0, 0, 0];
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) for (let c = 0; c < 3; c++) sum[c]! += img.data[(y * img.width + x) * 3 + c]!;
  return sum.map((v) => Math.round(v / ((x1 - x0) * (y1 - y0))));
}

test('PNGs of every colour type become RGB as Pillow reads them: alpha kept apart, grey replicated, 16-bit cut to the high byte', async () => {
  const rgba = await decodeImage(encode({ width: 2, height: 1, data: Uint8Array.from([10, 20, 30, 0, 40, 50, 60, 255]), channels: 4, depth: 8 }));
  assert.deepEqual(Array.from(rgba.data), [10, 20, 30, 40, 50, 60], 'colour under a transparent pixel is kept');
  assert.deepEqual(Array.from(rgba.alpha!), [0, 255]);
  const grey = await decodeImage(encode({ width: 2, height: 1, data: Uint8Array.from([7, 200]), channels: 1, depth: 8 }));
  assert.deepEqual(Array.from(grey.data), [7, 7, 7, 200, 200, 200]);
  assert.equal(grey.alpha, undefined);
  const greyAlpha = await decodeImage(encode({ width: 1, height: 1, data: Uint8Array.from([9, 100]), channels: 2, depth: 8 }));
  assert.deepEqual([Array.from(greyAlpha.data), Array.from(greyAlpha.alpha!)], [[9, 9, 9], [100]]);
  const deep = await decodeImage(encode({ width: 1, height: 1, data: Uint16Array.from([0x1234, 0xabcd, 0xff80]), channels: 3, depth: 16 }));
  assert.deepEqual(Array.from(deep.data), [0x12, 0xab, 0xff]);
  const palette = await decodeImage(encode({ width: 2, height: 1, data: Uint8Array.from([1, 0]), channels: 1, depth: 8, palette: [[255, 0, 0], [0, 0, 255]] }));
  assert.deepEqual(Array.from(palette.data), [0, 0, 255, 255, 0, 0]);
});

test('JPEG and WebP (lossless, with alpha) read as the pixels written', async () => {
  // Flat blocks survive JPEG's 8x8 DCT nearly unchanged.
  const pixels = rgbOf(16, 8, (x) => (x < 8 ? [200, 30, 30] : [20, 40, 220]));
  const jpeg = await decodeImage(await raw(16, 8, pixels).jpeg({ quality: 95 }).toBuffer());
  assert.deepEqual([jpeg.width, jpeg.height, jpeg.alpha], [16, 8, undefined]);
  for (const [c, want] of [[mean(jpeg, 0, 0, 8, 8), [200, 30, 30]], [mean(jpeg, 8, 0, 16, 8), [20, 40, 220]]] as const) {
    c.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= 8, `${c} vs ${want}`));
  }
  const rgba = Buffer.from([1, 2, 3, 255, 250, 128, 0, 7]);
  const webp = await decodeImage(await sharp(rgba, { raw: { width: 2, height: 1, channels: 4 } }).webp({ lossless: true }).toBuffer());
  assert.deepEqual([Array.from(webp.data), Array.from(webp.alpha!)], [[1, 2, 3, 250, 128, 0], [255, 7]]);
  const gif = await decodeImage(await raw(16, 8, pixels).gif().toBuffer());
  assert.deepEqual([gif.width, gif.height], [16, 8]);
});

test('EXIF orientation is applied (a JPEG stored sideways with orientation 6 reads upright)', async () => {
  // Stored 16x8: left half green above red, right half blue. Orientation 6 shows it turned 90° clockwise:
  // 8x16, the stored left half on top (stored top rows at the right), the right half below.
  const stored = rgbOf(16, 8, (x, y) => (x >= 8 ? [0, 0, 255] : y < 4 ? [0, 255, 0] : [255, 0, 0]));
  const jpeg = await raw(16, 8, stored).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
  assert.equal((await sharp(jpeg).metadata()).orientation, 6);
  const img = await decodeImage(jpeg);
  assert.deepEqual([img.width, img.height], [8, 16]);
  const near = (got: number[], want: number[]): boolean => got.every((v, i) => Math.abs(v - want[i]!) <= 24);
  assert.ok(near(mean(img, 5, 1, 8, 7), [0, 255, 0]), `top right ${mean(img, 5, 1, 8, 7)}`);
  assert.ok(near(mean(img, 0, 1, 3, 7), [255, 0, 0]), `top left ${mean(img, 0, 1, 3, 7)}`);
  assert.ok(near(mean(img, 0, 9, 8, 16), [0, 0, 255]), `bottom ${mean(img, 0, 9, 8, 16)}`);
});

/** A JPEG with an APP1 EXIF segment holding only UserComment, as piexif writes A1111's: `UNICODE\0` + UTF-16 big-endian. */
async function jpegWithUserComment(text: string): Promise<Buffer> {
  const comment = Buffer.concat([Buffer.from('UNICODE\0', 'latin1'), Buffer.from(text, 'utf16le').swap16()]);
  // Big-endian TIFF: header, IFD0 at 8 (one entry: the Exif IFD at 26), Exif IFD (one entry: UserComment at 44), the comment.
  const tiff = Buffer.alloc(44 + comment.length);
  tiff.write('MM', 0, 'latin1');
  tiff.writeUInt16BE(42, 2);
  tiff.writeUInt32BE(8, 4);
  for (const [at, tag, type, count, value] of [[8, 0x8769, 4, 1, 26], [26, 0x9286, 7, comment.length, 44]] as const) {
    tiff.writeUInt16BE(1, at);
    tiff.writeUInt16BE(tag, at + 2);
    tiff.writeUInt16BE(type, at + 4);
    tiff.writeUInt32BE(count, at + 6);
    tiff.writeUInt32BE(value, at + 10);
  }
  comment.copy(tiff, 44);
  const exif = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(exif.length + 2);
  const jpeg = await raw(8, 8, rgbOf(8, 8, () => [90, 90, 90])).jpeg().toBuffer();
  return Buffer.concat([jpeg.subarray(0, 2), Buffer.from([0xff, 0xe1]), length, exif, jpeg.subarray(2)]);
}

test("the parameters a picture carries: PNG text chunks, a JPEG's or WebP's EXIF UserComment (A1111's samples_format jpg / webp)", async () => {
  const text = 'a café, (fox:1.2) 🦊\nNegative prompt: blur\nSteps: 20, Sampler: Euler a, Seed: 1';
  const png = encodePng({ width: 1, height: 1, data: new Uint8Array(3) }, { parameters: text, extra: 'x' });
  assert.deepEqual(await readImageText(png), { parameters: text, extra: 'x' });
  assert.deepEqual(await readImageText(await jpegWithUserComment(text)), { parameters: text });
  // libvips writes the charset code ASCII: plain text reads back the same.
  const webp = await raw(4, 4, rgbOf(4, 4, () => [1, 2, 3])).webp().withExif({ IFD2: { UserComment: 'Steps: 4, Seed: 2' } }).toBuffer();
  assert.deepEqual(await readImageText(webp), { parameters: 'Steps: 4, Seed: 2' });
  assert.deepEqual(await readImageText(await raw(4, 4, rgbOf(4, 4, () => [1, 2, 3])).jpeg().toBuffer()), {});
  await assert.rejects(readImageText(new TextEncoder().encode('no picture'), { what: 'image' }), /^UserError: image is not a readable image/);
});

test('bad input: not an image, truncated, refused formats and huge images are UserErrors that say what to do', async () => {
  const refused = async (bytes: Uint8Array, pattern: RegExp, what?: string): Promise<void> => {
    await assert.rejects(decodeImage(bytes, { what }), (e: Error) => e instanceof UserError && pattern.test(e.message));
  };
  await refused(new TextEncoder().encode('hello, not a picture'), /^photo\.png is not a readable image \(.*\); give a PNG, JPEG or WebP file$/, 'photo.png');
  const jpeg = await raw(16, 16, rgbOf(16, 16, (x) => [x * 16, 0, 0])).jpeg().toBuffer();
  await refused(jpeg.subarray(0, jpeg.length - 60), /^the image is a damaged JPEG file \(.*\); re-save it$/);
  const png = encode({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 3), channels: 3 });
  await refused(png.subarray(0, png.length - 30), /^init_images\.0 is a damaged PNG file \(.*\); re-save it$/, 'init_images.0');
  await refused(await raw(4, 4, rgbOf(4, 4, () => [1, 2, 3])).tiff().toBuffer(), /^mask is a TIFF image; todo-sd reads PNG, JPEG, WebP, GIF, AVIF: convert it to PNG or JPEG first$/, 'mask');
  await refused(new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'), /is a SVG image; todo-sd reads/);
  await assert.rejects(decodeImage(png, { maxPixels: 63 }), (e: Error) => e instanceof UserError && /^the image is 8x8 pixels, more than the 63 allowed; scale it down first$/.test(e.message));
});
