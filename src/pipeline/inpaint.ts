/**
 * Inpainting with an ordinary model, AUTOMATIC1111's way (processing.py, "whole picture"): the
 * mask (white = repaint) is made grey, optionally inverted, blurred, resized to the image; the
 * masked pixels are pre-filled for 'fill'; the latent mask is the blurred mask resized to the
 * latent grid and rounded; 'latent-noise' / 'latent-nothing' replace the masked init latents.
 * During denoising the latents outside the mask are reset to the init latents at the next
 * step's noise level; at the end the original pixels are pasted back outside the mask.
 */
import type { RgbImage } from '../io/png.js';
import { maskBlur, pillowGaussianBlur } from '../image/blur.js';
import { resample } from '../image/resample.js';
import type { Tensor } from '../tensor.js';

export const INPAINT_FILLS = ['original', 'fill', 'latent-noise', 'latent-nothing'] as const;
export type InpaintFill = (typeof INPAINT_FILLS)[number];

export interface InpaintMask {
  /** White repaints, black keeps. An `alpha` plane (as decodeImage returns) that is not fully opaque is used instead, as A1111 does. */
  image: RgbImage & { alpha?: Uint8Array };
  /** Gaussian blur sigma in pixels (A1111's mask_blur; default 4). */
  blur?: number;
  /** Repaint the black part instead. */
  invert?: boolean;
  /** What the masked area starts from (A1111's inpainting_fill; default 'original'). */
  fill?: InpaintFill;
}

export interface PreparedMask {
  /** The blurred mask at the image size, 0–255, 255 = repaint. */
  pixels: Uint8Array;
  /** The latent mask, 1 = repaint, one value per latent pixel. */
  latent: Float32Array;
}

/** A1111's create_binary_mask: the alpha channel thresholded at 128 when it is not all opaque, else Pillow's grey (ITU-R 601). */
function greyMask(img: InpaintMask['image']): Uint8Array {
  const n = img.width * img.height;
  if (img.alpha && img.alpha.some((a) => a !== 255)) return img.alpha.map((a) => (a > 128 ? 255 : 0));
  const out = new Uint8Array(n);
  const d = img.data;
  for (let p = 0; p < n; p++) out[p] = (d[p * 3]! * 19595 + d[p * 3 + 1]! * 38470 + d[p * 3 + 2]! * 7471 + 0x8000) >> 16;
  return out;
}

/** The mask at the picture's size and on the latent grid (options already checked by the pipeline). */
export function prepareMask(m: InpaintMask, width: number, height: number, latentWidth: number, latentHeight: number): PreparedMask {
  let grey = greyMask(m.image);
  if (m.invert) grey = grey.map((v) => 255 - v);
  grey = maskBlur(grey, m.image.width, m.image.height, m.blur ?? 4);
  // A mask of another size is resized to the picture (A1111's resize mode "just resize", Lanczos).
  const pixels = resample({ width: m.image.width, height: m.image.height, channels: 1, data: grey }, width, height, 'lanczos').data;
  // Pillow's default resize filter (bicubic) down to the latent grid, then rounded: A1111's latmask.
  const small = resample({ width, height, channels: 1, data: pixels }, latentWidth, latentHeight, 'bicubic').data;
  const latent = Float32Array.from(small, (v) => Math.round(v / 255));
  return { pixels, latent };
}

/**
 * A1111's masking.fill: the kept pixels (alpha = 255 − mask, premultiplied) blurred at shrinking
 * radii and composited over each other, so the masked area takes the colours around it.
 */
export function fillMasked(image: RgbImage, mask: Uint8Array): RgbImage {
  const { width, height } = image;
  const n = width * height;
  const alpha = Float32Array.from(mask, (v) => (255 - v) / 255);
  const planes = [0, 1, 2].map((c) => Float32Array.from({ length: n }, (_, p) => image.data[p * 3 + c]! * alpha[p]!));
  const acc = [0, 1, 2].map(() => new Float32Array(n));
  const accA = new Float32Array(n);
  for (const [radius, repeats] of [[256, 1], [64, 1], [16, 2], [4, 4], [2, 2], [0, 1]] as const) {
    const a = pillowGaussianBlur(alpha, width, height, radius);
    const rgb = planes.map((pl) => pillowGaussianBlur(pl, width, height, radius));
    for (let r = 0; r < repeats; r++) {
      for (let p = 0; p < n; p++) {
        const sa = a[p]!;
        const outA = sa + accA[p]! * (1 - sa);
        for (let c = 0; c < 3; c++) {
          const src = sa > 0 ? rgb[c]![p]! / sa : 0;
          acc[c]![p] = outA > 0 ? (src * sa + acc[c]![p]! * accA[p]! * (1 - sa)) / outA : 0;
        }
        accA[p] = outA;
      }
    }
  }
  const data = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = Math.min(255, Math.max(0, Math.round(acc[c]![p]!)));
  return { width, height, data };
}

/** `keep · (1 − mask) + x · mask`, the mask broadcast over batch and channels. */
export function blendLatents(x: Tensor, keep: Tensor, mask: Float32Array): Tensor {
  const plane = mask.length;
  return { data: x.data.map((v, i) => { const m = mask[i % plane]!; return keep.data[i]! * (1 - m) + v * m; }), dims: x.dims };
}

/** A1111's overlay: the original pasted over the result with alpha 255 − min(255, 2 · mask). */
export function pasteOriginal(generated: RgbImage, original: RgbImage, mask: Uint8Array): RgbImage {
  const data = new Uint8Array(generated.data.length);
  for (let p = 0; p < mask.length; p++) {
    const a = (255 - Math.min(255, 2 * mask[p]!)) / 255;
    for (let c = 0; c < 3; c++) data[p * 3 + c] = Math.round(original.data[p * 3 + c]! * a + generated.data[p * 3 + c]! * (1 - a));
  }
  return { width: generated.width, height: generated.height, data };
}
