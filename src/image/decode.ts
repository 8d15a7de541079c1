/**
 * Images that arrive from clients: base64 (plain or a `data:` URL) PNGs of any colour type, as
 * 8-bit RGB the way A1111 reads them: pictures flattened onto white, masks taken from their
 * alpha channel when it has any transparency.
 */
import { decodePngRgb, type RgbImage } from '../io/png.js';

export function decodeBase64(text: string): Uint8Array {
  const body = text.startsWith('data:') ? text.slice(text.indexOf(',') + 1) : text;
  return new Uint8Array(Buffer.from(body, 'base64'));
}

function readPng(bytes: Uint8Array): RgbImage & { alpha?: Uint8Array } {
  return decodePngRgb(bytes, 'the image');
}

export function decodeRgb(bytes: Uint8Array): RgbImage {
  const { width, height, data, alpha } = readPng(bytes);
  if (!alpha) return { width, height, data };
  const out = new Uint8Array(data.length);
  for (let p = 0; p < width * height; p++) {
    const a = alpha[p]! / 255;
    for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round(data[p * 3 + c]! * a + 255 * (1 - a));
  }
  return { width, height, data: out };
}

/** A mask as grey RGB (white = repaint): its alpha when it has transparent pixels, else its luminance. */
export function decodeMask(bytes: Uint8Array): RgbImage {
  const { width, height, data, alpha } = readPng(bytes);
  const n = width * height;
  const useAlpha = alpha !== undefined && alpha.some((a) => a < 255);
  const out = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    // PIL's convert('L'): ITU-R 601-2 luma.
    const v = useAlpha ? alpha[p]! : 0.299 * data[p * 3]! + 0.587 * data[p * 3 + 1]! + 0.114 * data[p * 3 + 2]!;
    out.fill(Math.round(v), p * 3, p * 3 + 3);
  }
  return { width, height, data: out };
}
