/**
 * Images that arrive from clients: base64 (plain or a `data:` URL) PNGs of any colour type,
 * flattened to 8-bit RGB (alpha composited onto white, as A1111 does for img2img inputs).
 */
import { decode } from 'fast-png';
import type { RgbImage } from '../io/png.js';

export function decodeBase64(text: string): Uint8Array {
  const body = text.startsWith('data:') ? text.slice(text.indexOf(',') + 1) : text;
  return new Uint8Array(Buffer.from(body, 'base64'));
}

export function decodeRgb(bytes: Uint8Array): RgbImage {
  let png;
  try {
    png = decode(bytes);
  } catch (e) {
    throw new Error(`not a readable PNG (${(e as Error).message}); send PNG images, base64-encoded`);
  }
  const { width, height, channels, depth } = png;
  const src = png.data;
  const max = depth === 16 ? 65535 : (1 << depth) - 1;
  if (png.palette) throw new Error('palette PNGs are not supported; send an RGB, RGBA or grayscale PNG');
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const px = (i: number): number => (src[p * channels + i]! / max) * 255;
    const gray = channels <= 2;
    const alpha = channels === 2 || channels === 4 ? px(channels - 1) / 255 : 1;
    for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round(px(gray ? 0 : c) * alpha + 255 * (1 - alpha));
  }
  return { width, height, data: out };
}
