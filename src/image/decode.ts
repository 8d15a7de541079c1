/**
 * Images that arrive from clients: base64 (plain or a `data:` URL), decoded by io/image.ts, as
 * 8-bit RGB the way A1111 reads them: pictures flattened onto img2img_background_color, masks
 * taken from their alpha channel when it has any transparency.
 */
import { UserError } from '../errors.js';
import type { DecodedImage } from '../io/image.js';
import type { RgbImage } from '../io/png.js';

export function decodeBase64(text: string): Uint8Array {
  const body = text.startsWith('data:') ? text.slice(text.indexOf(',') + 1) : text;
  return new Uint8Array(Buffer.from(body, 'base64'));
}

/** `#rgb` or `#rrggbb` → [r, g, b]. */
export function parseColor(color: string): [number, number, number] {
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color.trim());
  if (!m) throw new UserError(`img2img_background_color must be a colour like #ffffff; got "${color}"`);
  const hex = m[1]!.length === 3 ? [...m[1]!].map((c) => c + c).join('') : m[1]!;
  return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];
}

/** A picture over a background colour (A1111's `images.flatten`): transparent parts take the colour. */
export function flattenImage(img: DecodedImage, background = '#ffffff'): RgbImage {
  const { width, height, data, alpha } = img;
  if (!alpha) return { width, height, data };
  const bg = parseColor(background);
  const out = new Uint8Array(data.length);
  for (let p = 0; p < width * height; p++) {
    const a = alpha[p]! / 255;
    for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round(data[p * 3 + c]! * a + bg[c]! * (1 - a));
  }
  return { width, height, data: out };
}

/** A mask as grey RGB (white = repaint): its alpha when it has transparent pixels, else its luminance. */
export function maskImage(img: DecodedImage): RgbImage {
  const { width, height, data, alpha } = img;
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
