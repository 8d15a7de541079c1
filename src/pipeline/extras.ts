/**
 * AUTOMATIC1111's "Extras" upscaling (scripts/postprocessing_upscale.py): scale by a factor or
 * to a size, optionally crop to that size, and optionally blend in a second upscaler's result;
 * the `Postprocess …` fields it records. Face restoration (GFPGAN, CodeFormer) is not offered.
 */
import type { RgbImage } from '../io/png.js';
import type { UpscaleOptions } from '../models/upscaler/upscaler.js';
import { infotextValue } from './parameters.js';
import { blendImages, centerOnCanvas, upscaleBy, upscalerName, type ImageUpscaler } from './upscale-image.js';
import { UserError } from '../errors.js';

export interface ExtrasOptions {
  /** Scale by `by`, or ('to') to `width` × `height` (A1111's resize_mode 0 / 1). */
  mode: 'by' | 'to';
  by?: number;
  width?: number;
  height?: number;
  /** With 'to': crop (or pad with black) to exactly width × height around the centre. */
  crop?: boolean;
  /** 'none' leaves the image as it is, as A1111 does. */
  upscaler: ImageUpscaler;
  upscaler2?: ImageUpscaler;
  /** How much of the second upscaler's result is blended in, 0 to 1. */
  upscaler2Visibility?: number;
  /** Tiles, progress and abort of the upscaler models. */
  upscale?: UpscaleOptions;
}

export interface ExtrasResult {
  image: RgbImage;
  /** A1111's `Postprocess …` fields, in its order. */
  info: [string, string | number][];
}

/** The fields as A1111's infotext writes them: `key: value, key: value`. */
export function extrasInfotext(info: ExtrasResult['info']): string {
  return info.map(([k, v]) => `${k}: ${infotextValue(v)}`).join(', ');
}

export async function upscaleExtras(img: RgbImage, o: ExtrasOptions): Promise<ExtrasResult> {
  const info = new Map<string, string | number>();
  if (o.upscaler === 'none') return { image: img, info: [] };
  const once = async (u: ImageUpscaler): Promise<RgbImage> => {
    let by: number;
    if (o.mode === 'to') {
      if (!(o.width! >= 1 && o.height! >= 1)) throw new UserError(`extras: upscaling to a size needs a width and height of at least 1; got ${o.width}x${o.height}`);
      by = Math.max(o.width! / img.width, o.height! / img.height);
      info.set('Postprocess upscale to', `${o.width}x${o.height}`);
    } else {
      by = o.by ?? 2;
      info.set('Postprocess upscale by', by);
    }
    let out = await upscaleBy(img, by, u, o.upscale);
    if (o.mode === 'to' && o.crop) {
      out = centerOnCanvas(out, o.width!, o.height!);
      info.set('Postprocess crop to', `${out.width}x${out.height}`);
    }
    return out;
  };
  let out = await once(o.upscaler);
  info.set('Postprocess upscaler', upscalerName(o.upscaler));
  const visibility = o.upscaler2Visibility ?? 0;
  if (o.upscaler2 && o.upscaler2 !== 'none' && visibility > 0) {
    out = blendImages(out, await once(o.upscaler2), Math.min(1, visibility));
    info.set('Postprocess upscaler 2', upscalerName(o.upscaler2));
  }
  return { image: out, info: [...info] };
}
