/**
 * The parts of a pipeline that are no network: scheduler config and tokenizer, from a diffusers
 * folder or, for a single-file checkpoint, from the package's copies; and the VAE, the model's
 * own or a replacement (`--vae`) checked against the model's latent family.
 */
import { findComponent } from '../io/model-folder.js';
import { checkModelFile, isSingleFile, openComponent } from '../models/model-source.js';
import { CLIP_VOCAB_DIR, SingleFileCheckpoint, type Prediction } from '../models/single-file/checkpoint.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import type { UNetConfig } from '../models/unet.js';
import { TinyVAE, parseTinyVAEConfig } from '../models/taesd.js';
import { isAutoencoderTinyFolder, isTinyVAEFamilyFolder, isTinyVAESource, tinyVAEInFolder, TINY_VAE_NAMES, type TinyVAEFamily } from '../models/taesd-source.js';
import { parseUNetConfig } from '../models/unet.js';
import { parseVAEConfig, VAE } from '../models/vae.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { loadTokenizer, type ClipTokenizer } from '../tokenizer/clip.js';
import { SdxlConditioner } from './conditioning-sdxl.js';
import { UserError } from '../errors.js';
import { detectModelFamily, type ModelFamily } from './model-family.js';

export interface ModelSourceOptions {
  /**
   * A VAE that replaces the model's: a single-file VAE or checkpoint, a diffusers VAE folder or its
   * weights file; or a TAESD (see `taesd`), which then decodes and encodes everything.
   */
  vae?: string;
  /** Overrides the prediction type of the model's scheduler (single files: what the .yaml or the family implies). */
  prediction?: Prediction;
  /**
   * A TAESD beside the model's VAE, for previews and `vaeDecoder` / `vaeEncoder: 'taesd'`: a
   * diffusers AutoencoderTiny folder, madebyollin's `taesd_decoder.safetensors` (its encoder file
   * beside it), or a folder with one per family (A1111's `models/VAE-approx`).
   */
  taesd?: string;
  /** The family a TAESD (`vae` or `taesd`) was made for, where its name does not say (`taesd` → sd, `taesdxl` → sdxl). */
  taesdFamily?: TinyVAEFamily;
}

export const PREDICTIONS: readonly Prediction[] = ['epsilon', 'v'];

/** The image size a model was trained at: its U-Net's sample_size (diffusers' default 64) × the VAE's scale. */
export function nativeImageSize(unetConfig: Record<string, unknown>, vaeScale: number): number {
  return Number((unetConfig.sample_size as number | undefined) ?? 64) * vaeScale;
}

/** Which VAE decodes or encodes: the model's ('full') or a TAESD (A1111's "Full" / "TAESD"). */
export const VAE_METHODS = ['full', 'taesd'] as const;
export type VaeMethod = (typeof VAE_METHODS)[number];

export function schedulerConfig(model: string, opts: ModelSourceOptions): Record<string, unknown> {
  if (opts.prediction !== undefined && !PREDICTIONS.includes(opts.prediction)) {
    throw new UserError(`prediction must be ${PREDICTIONS.join(' or ')}; got ${JSON.stringify(opts.prediction)}`);
  }
  checkModelFile(model);
  if (isSingleFile(model)) return SingleFileCheckpoint.open(model, { prediction: opts.prediction }).schedulerConfig();
  const config = findComponent(model, 'scheduler', { configFile: 'scheduler_config.json', needWeights: false }).config;
  if (opts.prediction === undefined) return config;
  return { ...config, prediction_type: opts.prediction === 'v' ? 'v_prediction' : 'epsilon' };
}

/** `component`: `tokenizer` (default) or SDXL's `tokenizer_2`. */
export function modelTokenizer(model: string, opts: { onWarning?: (m: string) => void; component?: 'tokenizer' | 'tokenizer_2' }): Promise<ClipTokenizer> {
  if (!isSingleFile(model)) return loadTokenizer(model, opts);
  // As A1111 and ComfyUI tokenize single files (OpenAI / open_clip BPE): `!` in a prompt is text.
  const padToken = SingleFileCheckpoint.open(model).padToken(opts.component ?? 'tokenizer');
  return loadTokenizer(CLIP_VOCAB_DIR, { onWarning: opts.onWarning, padToken, specialPad: false });
}

/** SDXL's two tokenizers and text encoders, from a diffusers folder or a single-file checkpoint. */
export async function modelSdxlConditioner(model: string, unet: UNetConfig, opts: RuntimeOptions): Promise<SdxlConditioner> {
  if (!isSingleFile(model)) return SdxlConditioner.load(model, unet, opts);
  const [tok1, tok2, te1, te2] = await Promise.all([
    modelTokenizer(model, { onWarning: opts.onWarning }),
    modelTokenizer(model, { onWarning: opts.onWarning, component: 'tokenizer_2' }),
    ClipTextEncoder.load(model, opts),
    ClipTextEncoder.load(model, { ...opts, component: 'text_encoder_2' }),
  ]);
  // A single file has no model_index.json: diffusers' SDXL default, zeros for an absent negative prompt.
  return new SdxlConditioner([tok1, tok2], [te1, te2], unet, true);
}

/** The latent scaling factor the model states: its VAE config's, or the single file's family / .yaml. */
function modelScalingFactor(model: string): number | undefined {
  if (isSingleFile(model)) return SingleFileCheckpoint.open(model).scalingFactor;
  try {
    return (findComponent(model, 'vae', { classNames: ['AutoencoderKL'], needWeights: false }).config.scaling_factor as number | undefined) ?? 0.18215;
  } catch {
    return undefined;
  }
}

/** The model's own VAE config (AutoencoderKL or AutoencoderTiny), if it has one. */
function ownVAEConfig(model: string): Record<string, unknown> | undefined {
  try {
    if (!isSingleFile(model)) return findComponent(model, 'vae', { classNames: ['AutoencoderKL', 'AutoencoderTiny'], needWeights: false }).config;
    const file = SingleFileCheckpoint.open(model);
    return file.has('vae') ? file.component('vae').config : undefined;
  } catch {
    return undefined;
  }
}

/** The model's family (SD 1.x / 2.x or SDXL), from its U-Net config. */
function modelFamily(model: string): ModelFamily {
  return detectModelFamily(model, parseUNetConfig(openComponent(model, 'unet', ['UNet2DConditionModel']).config));
}

const FAMILY_NAMES: Record<TinyVAEFamily, string> = { sd: 'SD 1.x / 2.x', sdxl: 'SDXL' };

/**
 * A TAESD for the model: `source` is one TAESD, or a folder holding one per family (A1111's
 * `models/VAE-approx`), from which the model's is taken. One made for the other family, or for
 * another latent grid than the model's VAE, is refused. `flag` names the source in messages.
 */
export async function modelTinyVAE(model: string, source: string, flag: string, opts: ModelSourceOptions & RuntimeOptions): Promise<TinyVAE> {
  const family = modelFamily(model);
  const tiny = await TinyVAE.load(isTinyVAEFamilyFolder(source) ? tinyVAEInFolder(source, family) : source, { ...opts, family: opts.taesdFamily });
  const want = TINY_VAE_NAMES[family];
  if (tiny.family !== undefined && tiny.family !== family) {
    await tiny.dispose();
    throw new UserError(
      `${flag} ${source} is a TAESD for ${FAMILY_NAMES[tiny.family]} (${TINY_VAE_NAMES[tiny.family]}) but the model is ${FAMILY_NAMES[family]}: ` +
        `use ${want} (${want}_decoder.safetensors / ${want}_encoder.safetensors or the diffusers folder, huggingface.co/madebyollin/${want})` +
        (opts.taesdFamily ? '' : '; if its name is wrong, state its family with --taesd-family'),
    );
  }
  if (tiny.family === undefined) {
    opts.onWarning?.(`${flag} ${source}: its name does not say which family the TAESD was made for (taesd: SD 1.x / 2.x, taesdxl: SDXL); taken to be ${want}, the model's (--taesd-family states it)`);
  }
  const own = ownVAEConfig(model);
  const ownGrid = own && (own._class_name === 'AutoencoderTiny' ? parseTinyVAEConfig(own) : parseVAEConfig(own));
  if (ownGrid && (ownGrid.scale !== tiny.config.scale || ownGrid.latentChannels !== tiny.config.latentChannels)) {
    await tiny.dispose();
    throw new UserError(
      `${flag} ${source}: the TAESD has ${tiny.config.latentChannels} latent channels at 1/${tiny.config.scale} of the image size, ` +
        `the model's VAE ${ownGrid.latentChannels} at 1/${ownGrid.scale}: it was made for another latent space`,
    );
  }
  return tiny;
}

const familyOf = (scale: number): string => (Math.abs(scale - 0.13025) < 1e-6 ? 'SDXL' : Math.abs(scale - 0.18215) < 1e-6 ? 'SD 1.x / 2.x' : 'another family');

export async function modelVAE(model: string, opts: ModelSourceOptions & RuntimeOptions): Promise<VAE | TinyVAE> {
  if (!opts.vae) return isAutoencoderTinyFolder(model) ? TinyVAE.load(model, opts) : VAE.load(model, opts);
  if (isTinyVAESource(opts.vae)) return modelTinyVAE(model, opts.vae, '--vae', opts);
  const own = modelScalingFactor(model);
  const theirs = openComponent(opts.vae, 'vae', ['AutoencoderKL']).config.scaling_factor as number | undefined;
  if (own !== undefined && theirs !== undefined && Math.abs(own - theirs) > 1e-6) {
    throw new UserError(
      `--vae ${opts.vae} is a VAE of another model family: its latent scaling factor is ${theirs} (${familyOf(theirs)}), ` +
        `the model's is ${own} (${familyOf(own)}); use a VAE made for this model`,
    );
  }
  return VAE.load(opts.vae, { ...opts, scalingFactor: own ?? theirs });
}
