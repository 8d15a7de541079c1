/**
 * Enlarging an image the way AUTOMATIC1111 does with its upscalers (modules/upscaler.py,
 * images.resize_image): the built-in Lanczos and Nearest, or a model, applied up to three times
 * until the image reaches scale × its size (rounded down to multiples of 8), then Lanczos to that
 * size exactly. The hires fix, SD upscale, Tiled Diffusion's img2img upscale on the server, the
 * extras (postprocessing) endpoints and `todo-sd upscale` share it.
 */
import { resampleNearest } from '../image/resample.js';
import type { RgbImage } from '../io/png.js';
import { Upscaler, type UpscaleOptions } from '../models/upscaler/upscaler.js';
import { fitImage } from './img2img.js';
import { UserError } from '../errors.js';

/** The built-in upscalers, in the order A1111's upscaler lists start with (the models follow). */
export const IMAGE_UPSCALERS = ['none', 'lanczos', 'nearest'] as const;
export type BuiltinUpscaler = (typeof IMAGE_UPSCALERS)[number];

/** A1111's names of the built-in upscalers. */
export const A1111_IMAGE_UPSCALERS: Record<BuiltinUpscaler, string> = { none: 'None', lanczos: 'Lanczos', nearest: 'Nearest' };

/** An upscaler of one's own: the picture enlarged by about `scale` (one `do_upscale`; A1111's rules bring the result to the size). */
export type UpscaleFn = (image: RgbImage, scale: number) => RgbImage | Promise<RgbImage>;

/** A1111's "None", "Lanczos", "Nearest", an upscaler model, or a function of one's own with the name the infotext gives it. */
export type ImageUpscaler = BuiltinUpscaler | Upscaler | { name: string; run: UpscaleFn };

/** A built-in upscaler by our name or A1111's, in any case; undefined for any other name (a model's). */
export function builtinUpscaler(name: string): BuiltinUpscaler | undefined {
  const lower = name.toLowerCase();
  return IMAGE_UPSCALERS.find((u) => u === lower || A1111_IMAGE_UPSCALERS[u].toLowerCase() === lower);
}

/** A1111's name of an upscaler. */
export function upscalerName(u: ImageUpscaler): string {
  return typeof u === 'string' ? A1111_IMAGE_UPSCALERS[u] : u.name;
}

/** A1111's target of `Upscaler.upscale(img, scale)`: ⌊size · scale / 8⌋ · 8 on each side. */
export function upscaleTarget(width: number, height: number, scale: number): [number, number] {
  return [Math.floor((width * scale) / 8) * 8, Math.floor((height * scale) / 8) * 8];
}

/** One `do_upscale` of A1111's upscaler classes: the model's pass, one's own function, or a resize by `scale` (truncated to whole pixels). */
async function doUpscale(img: RgbImage, scale: number, u: ImageUpscaler, o: UpscaleOptions): Promise<RgbImage> {
  if (u instanceof Upscaler) return u.upscale(img, o);
  if (typeof u === 'object') return u.run(img, scale);
  if (u === 'none') return img;
  const [w, h] = [Math.trunc(img.width * scale), Math.trunc(img.height * scale)];
  if (u === 'lanczos') return fitImage(img, w, h);
  return { width: w, height: h, data: resampleNearest({ ...img, channels: 3 }, w, h).data };
}

/** A1111's `Upscaler.upscale(img, scale)`: the result is ⌊size · scale / 8⌋ · 8 pixels on each side. */
export async function upscaleBy(img: RgbImage, scale: number, u: ImageUpscaler, o: UpscaleOptions = {}): Promise<RgbImage> {
  if (!(scale > 0) || !Number.isFinite(scale)) throw new UserError(`upscale: the scale must be a positive number; got ${scale}`);
  const [destW, destH] = upscaleTarget(img.width, img.height, scale);
  if (destW < 8 || destH < 8) throw new UserError(`upscale: ${img.width}x${img.height} × ${scale} is smaller than 8x8 pixels`);
  let out = img;
  for (let i = 0; i < 3; i++) {
    if (out.width >= destW && out.height >= destH && (i > 0 || scale !== 1)) break;
    const before = [out.width, out.height];
    out = await doUpscale(out, scale, u, o);
    if (out.width === before[0] && out.height === before[1]) break;
  }
  return out.width === destW && out.height === destH ? out : fitImage(out, destW, destH);
}

/** A1111's `images.resize_image(0, img, width, height, upscaler)` (the hires fix's resize): enlarge with the upscaler, then Lanczos to the size. */
export async function resizeWithUpscaler(img: RgbImage, width: number, height: number, u: ImageUpscaler, o: UpscaleOptions = {}): Promise<RgbImage> {
  const scale = Math.max(width / img.width, height / img.height);
  const up = u !== 'none' && scale > 1 ? await upscaleBy(img, scale, u, o) : img;
  return fitImage(up, width, height);
}

/** Pillow's `Image.blend(a, b, alpha)` on 8-bit images: a + alpha·(b − a) in float32, truncated. */
export function blendImages(a: RgbImage, b: RgbImage, alpha: number): RgbImage {
  const k = Math.fround(alpha);
  const data = a.data.map((v, i) => Math.min(255, Math.max(0, Math.trunc(Math.fround(v + Math.fround(k * (b.data[i]! - v)))))));
  return { width: a.width, height: a.height, data };
}

/** An image centred on a black canvas of width × height (Pillow's paste into `Image.new('RGB', …)`), cropping what sticks out. */
export function centerOnCanvas(img: RgbImage, width: number, height: number): RgbImage {
  const ox = Math.floor(width / 2) - Math.floor(img.width / 2);
  const oy = Math.floor(height / 2) - Math.floor(img.height / 2);
  const data = new Uint8Array(width * height * 3);
  for (let y = Math.max(0, oy); y < Math.min(height, oy + img.height); y++) {
    const x0 = Math.max(0, ox);
    const x1 = Math.min(width, ox + img.width);
    if (x1 > x0) data.set(img.data.subarray(((y - oy) * img.width + x0 - ox) * 3, ((y - oy) * img.width + x1 - ox) * 3), (y * width + x0) * 3);
  }
  return { width, height, data };
}
