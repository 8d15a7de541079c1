/**
 * What the server tells about a model without loading it, from its configs alone: the family,
 * the size it was trained at (the page's default size) and its U-Net's attention levels (the
 * speed settings read "max depth" against them). Read once per model file or folder.
 */
import { openComponent } from '../models/model-source.js';
import { attentionLevels, parseUNetConfig, type UNetConfig } from '../models/unet.js';
import { parseVAEConfig } from '../models/vae.js';
import { detectModelFamily, type ModelFamily } from '../pipeline/model-family.js';
import { nativeImageSize } from '../pipeline/model-parts.js';

export interface ModelFacts {
  family: ModelFamily;
  nativeSize: number;
  /** Pixels per latent, each way. */
  vaeScale: number;
  unet: UNetConfig;
  attentionLevels: number[];
}

const cache = new Map<string, ModelFacts>();

export function modelFacts(path: string): ModelFacts {
  const hit = cache.get(path);
  if (hit) return hit;
  const unetConfig = openComponent(path, 'unet', ['UNet2DConditionModel']).config;
  const unet = parseUNetConfig(unetConfig);
  const vae = parseVAEConfig(openComponent(path, 'vae', ['AutoencoderKL']).config);
  const facts = { family: detectModelFamily(path, unet), nativeSize: nativeImageSize(unetConfig, vae.scale), vaeScale: vae.scale, unet, attentionLevels: attentionLevels(unet) };
  cache.set(path, facts);
  return facts;
}
