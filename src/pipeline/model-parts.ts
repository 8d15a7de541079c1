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
import { VAE } from '../models/vae.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { loadTokenizer, type ClipTokenizer } from '../tokenizer/clip.js';
import { SdxlConditioner } from './conditioning-sdxl.js';

export interface ModelSourceOptions {
  /** A VAE that replaces the model's: a single-file VAE or checkpoint, a diffusers VAE folder or its weights file. */
  vae?: string;
  /** Overrides the prediction type of the model's scheduler (single files: what the .yaml or the family implies). */
  prediction?: Prediction;
}

export const PREDICTIONS: readonly Prediction[] = ['epsilon', 'v'];

/** The image size a model was trained at: its U-Net's sample_size (diffusers' default 64) × the VAE's scale. */
export function nativeImageSize(unetConfig: Record<string, unknown>, vaeScale: number): number {
  return Number((unetConfig.sample_size as number | undefined) ?? 64) * vaeScale;
}

export function schedulerConfig(model: string, opts: ModelSourceOptions): Record<string, unknown> {
  if (opts.prediction !== undefined && !PREDICTIONS.includes(opts.prediction)) {
    throw new Error(`prediction must be ${PREDICTIONS.join(' or ')}; got ${JSON.stringify(opts.prediction)}`);
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

const familyOf = (scale: number): string => (Math.abs(scale - 0.13025) < 1e-6 ? 'SDXL' : Math.abs(scale - 0.18215) < 1e-6 ? 'SD 1.x / 2.x' : 'another family');

export async function modelVAE(model: string, opts: ModelSourceOptions & RuntimeOptions): Promise<VAE> {
  if (!opts.vae) return VAE.load(model, opts);
  const own = modelScalingFactor(model);
  const theirs = openComponent(opts.vae, 'vae', ['AutoencoderKL']).config.scaling_factor as number | undefined;
  if (own !== undefined && theirs !== undefined && Math.abs(own - theirs) > 1e-6) {
    throw new Error(
      `--vae ${opts.vae} is a VAE of another model family: its latent scaling factor is ${theirs} (${familyOf(theirs)}), ` +
        `the model's is ${own} (${familyOf(own)}); use a VAE made for this model`,
    );
  }
  return VAE.load(opts.vae, { ...opts, scalingFactor: own ?? theirs });
}
