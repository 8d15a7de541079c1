/**
 * Images that arrive from clients: base64 (plain or a `data:` URL) PNGs of any colour type, as
 * 8-bit RGB the way A1111 reads them: pictures flattened onto white, masks taken from their
 * alpha channel when it has any transparency.
 */
import { decode } from 'fast-png';
import type { RgbImage } from '../io/png.js';

export function decodeBase64(text: string): Uint8Array {
  const body = text.startsWith('data:') ? text.slice(text.indexOf(',') + 1) : text;
  return new Uint8Array(Buffer.from(body, 'base64'));
}

/** Samples scaled to 0–255, with the number of channels and whether the last one is alpha. */
function readPng(bytes: Uint8Array): { width: number; height: number; channels: number; alpha: boolean; px: (p: number, c: number) => number } {
  let png;
  try {
    png = decode(bytes);
  } catch (e) {
    throw new Error(`not a readable PNG (${(e as Error).message}); send PNG images, base64-encoded`);
  }
  if (png.palette) throw new Error('palette PNGs are not supported; send an RGB, RGBA or grayscale PNG');
  const { width, height, channels, data } = png;
  const max = png.depth === 16 ? 65535 : (1 << png.depth) - 1;
  return { width, height, channels, alpha: channels === 2 || channels === 4, px: (p, c) => (data[p * channels + c]! / max) * 255 };
}

export function decodeRgb(bytes: Uint8Array): RgbImage {
  const { width, height, channels, alpha, px } = readPng(bytes);
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const a = alpha ? px(p, channels - 1) / 255 : 1;
    for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round(px(p, channels <= 2 ? 0 : c) * a + 255 * (1 - a));
  }
  return { width, height, data: out };
}

/** A mask as grey RGB (white = repaint): its alpha when it has transparent pixels, else its luminance. */
export function decodeMask(bytes: Uint8Array): RgbImage {
  const { width, height, channels, alpha, px } = readPng(bytes);
  const n = width * height;
  const useAlpha = alpha && Array.from({ length: n }, (_, p) => px(p, channels - 1)).some((a) => a < 255);
  const out = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    // PIL's convert('L'): ITU-R 601-2 luma.
    const v = useAlpha ? px(p, channels - 1) : channels <= 2 ? px(p, 0) : 0.299 * px(p, 0) + 0.587 * px(p, 1) + 0.114 * px(p, 2);
    out.fill(Math.round(v), p * 3, p * 3 + 3);
  }
  return { width, height, data: out };
}
