/**
 * Which pipeline a diffusers folder needs, read from the folder itself (never asked for):
 * model_index.json's `_class_name`, else the U-Net's config (SDXL's `addition_embed_type`).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJson } from '../io/model-folder.js';
import type { UNetConfig } from '../models/unet.js';

export type ModelFamily = 'sd' | 'sdxl';

const SDXL_PIPELINES = ['StableDiffusionXLPipeline', 'StableDiffusionXLImg2ImgPipeline', 'StableDiffusionXLInpaintPipeline'];

export function detectModelFamily(dir: string, unet: UNetConfig): ModelFamily {
  const indexPath = join(dir, 'model_index.json');
  const pipeline = existsSync(indexPath) ? readJson(indexPath, 'model index')._class_name : undefined;
  const xlIndex = typeof pipeline === 'string' && SDXL_PIPELINES.includes(pipeline);
  const xlUNet = unet.textTime !== null;
  if (xlIndex !== xlUNet && pipeline !== undefined) {
    throw new Error(
      `${indexPath} names ${String(pipeline)} but the U-Net ${xlUNet ? 'is' : 'is not'} an SDXL one (addition_embed_type "text_time"); the folder mixes components of different models`,
    );
  }
  return xlUNet ? 'sdxl' : 'sd';
}
