/**
 * A single-file checkpoint as AUTOMATIC1111, ComfyUI and model sites distribute them: every
 * component in one safetensors file, in the original layout. LDM (SD 1.x / 2.x):
 * `model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*` (CLIP) or
 * `cond_stage_model.model.*` (OpenCLIP); SGM (SDXL): the same U-Net and VAE, text encoders under
 * `conditioner.embedders.0.transformer.*` and `conditioner.embedders.1.model.*`. A lone VAE file
 * (`encoder.*`, `decoder.*`) is read too, for `--vae`. `model_ema.*` and other extras are ignored.
 *
 * The family comes from the keys; what they cannot say comes from a same-named `.yaml` beside the
 * file, else from the family's rules (SD 1.x: 8 heads; SD 2.x, SDXL: 64 channels per head).
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TensorFile, TensorInfo } from '../../io/tensor-file.js';
import { openWeightsFile } from '../../io/weights-file.js';
import { diffusersUNetKey, unetConfigFromTensors, unetLayersPerBlock, type TensorsByKey } from './ldm-unet.js';
import { diffusersVAEKey, vaeConfigFromTensors, vaeLevels } from './ldm-vae.js';
import { originalConfigPath, readOriginalConfig, type OriginalConfig } from './original-config.js';
import { clipConfig, clipSlots, openClipConfig, openClipSlots } from './text-encoders.js';
import { CheckpointWeights, type CheckpointSlot } from './weights.js';
import { UserError } from '../../errors.js';

export type ModelFamily = 'sd1' | 'sd2' | 'sdxl';
export const CHECKPOINT_COMPONENTS = ['unet', 'vae', 'text_encoder', 'text_encoder_2'] as const;
export type CheckpointComponentName = (typeof CHECKPOINT_COMPONENTS)[number];
export type Prediction = 'epsilon' | 'v';

export interface CheckpointComponent {
  /** The diffusers / transformers config this component would have in a diffusers folder. */
  config: Record<string, unknown>;
  weights: CheckpointWeights;
}

const UNET = 'model.diffusion_model.';
const VAE = 'first_stage_model.';
const TEXT: Record<ModelFamily, { prefix: string; kind: 'clip' | 'open_clip' }[]> = {
  sd1: [{ prefix: 'cond_stage_model.transformer.', kind: 'clip' }],
  sd2: [{ prefix: 'cond_stage_model.model.', kind: 'open_clip' }],
  sdxl: [
    { prefix: 'conditioner.embedders.0.transformer.', kind: 'clip' },
    { prefix: 'conditioner.embedders.1.model.', kind: 'open_clip' },
  ],
};

const ASSETS = fileURLToPath(new URL('../../../assets/', import.meta.url));
/** The CLIP BPE vocabulary every family uses (the built-in model's copy). */
export const CLIP_VOCAB_DIR = join(ASSETS, 'tiny-photo', 'tokenizer');

/** The tensors under `prefix`, keyed without it. */
export function under(file: TensorFile, prefix: string): Map<string, TensorInfo> {
  const out = new Map<string, TensorInfo>();
  for (const [k, t] of file.tensors) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), t);
  return out;
}

/** The most common key prefixes (two dotted parts), for errors about unknown layouts. */
export function prefixSummary(file: TensorFile): string {
  const counts = new Map<string, number>();
  for (const k of file.tensors.keys()) {
    const p = k.split('.').slice(0, 2).join('.');
    counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 5);
  return top.length ? top.map(([p, n]) => `${p}.* (${n})`).join(', ') : 'no tensors at all';
}

function detectFamily(file: TensorFile): ModelFamily | 'vae' {
  const has = (prefix: string): boolean => [...file.tensors.keys()].some((k) => k.startsWith(prefix));
  if (has('conditioner.embedders.')) {
    if (!has(TEXT.sdxl[1]!.prefix)) {
      throw new UserError(`${basename(file.path)}: an SGM checkpoint without conditioner.embedders.1.model.* (an SDXL refiner?); only SDXL base-style models are supported`);
    }
    return 'sdxl';
  }
  if (has(TEXT.sd2[0]!.prefix)) return 'sd2';
  if (has(TEXT.sd1[0]!.prefix)) return 'sd1';
  if (has(UNET)) {
    if (file.has(`${UNET}label_emb.0.0.weight`)) return 'sdxl';
    const toK = [...file.tensors.values()].find((t) => t.name.startsWith(UNET) && t.name.endsWith('.attn2.to_k.weight'));
    return toK?.shape[1] === 1024 ? 'sd2' : 'sd1';
  }
  if (has(VAE) || (file.has('encoder.conv_in.weight') && file.has('decoder.conv_in.weight'))) return 'vae';
  const diffusersHint = has('down_blocks.') || has('text_model.') || has('decoder.up_blocks.')
    ? ' It looks like one component of a diffusers folder: pass the folder (or, for a VAE, its folder with config.json).'
    : '';
  throw new UserError(
    `${basename(file.path)}: the tensor names match no checkpoint layout todo-sd knows (found ${prefixSummary(file)}); ` +
      `expected LDM (model.diffusion_model.*, first_stage_model.*, cond_stage_model.*) or SGM (conditioner.embedders.*) names.${diffusersHint}`,
  );
}

export interface CheckpointOptions {
  /** Overrides the prediction type the .yaml or the family implies. */
  prediction?: Prediction;
}

export class SingleFileCheckpoint {
  /** The family's native latent size (diffusers' unet sample_size). */
  readonly sampleSize: number;
  readonly prediction: Prediction;

  private constructor(
    readonly file: TensorFile,
    /** undefined for a lone VAE file. */
    readonly family: ModelFamily | undefined,
    readonly original: OriginalConfig | undefined,
    opts: CheckpointOptions,
  ) {
    // As diffusers' from_single_file: the .yaml's parameterization, else v for SD 2.x (its default config is v2-inference-v.yaml).
    const stated: Prediction = original ? (original.parameterization === 'v' ? 'v' : 'epsilon') : family === 'sd2' ? 'v' : 'epsilon';
    this.prediction = opts.prediction ?? stated;
    this.sampleSize = family === 'sdxl' ? 128 : stated === 'v' ? 96 : 64;
  }

  static open(path: string, opts: CheckpointOptions = {}): SingleFileCheckpoint {
    const file = openWeightsFile(path);
    const family = detectFamily(file);
    const yaml = originalConfigPath(path);
    return new SingleFileCheckpoint(file, family === 'vae' ? undefined : family, yaml ? readOriginalConfig(yaml) : undefined, opts);
  }

  /** The latent scaling factor: the .yaml's `scale_factor`, else the family's; undefined for a lone VAE. */
  get scalingFactor(): number | undefined {
    if (this.original?.scaleFactor !== undefined) return this.original.scaleFactor;
    if (!this.family) return undefined;
    return this.family === 'sdxl' ? 0.13025 : 0.18215;
  }

  has(name: CheckpointComponentName): boolean {
    if (name === 'vae') return under(this.file, this.vaePrefix()).has('decoder.conv_in.weight');
    if (name === 'unet') return this.file.has(`${UNET}input_blocks.0.0.weight`);
    const text = this.family ? TEXT[this.family][name === 'text_encoder' ? 0 : 1] : undefined;
    return text !== undefined && [...this.file.tensors.keys()].some((k) => k.startsWith(text.prefix));
  }

  /** `name`: a diffusers component folder name (unet, vae, text_encoder, text_encoder_2). */
  component(name: string): CheckpointComponent {
    if (!(CHECKPOINT_COMPONENTS as readonly string[]).includes(name)) {
      throw new UserError(`a single-file checkpoint has no component "${name}"; it holds ${CHECKPOINT_COMPONENTS.join(', ')}`);
    }
    if (!this.has(name as CheckpointComponentName)) throw new UserError(this.missing(name as CheckpointComponentName));
    if (name === 'unet') return this.unet();
    if (name === 'vae') return this.vae();
    return this.textEncoder(name === 'text_encoder' ? 0 : 1);
  }

  private missing(name: CheckpointComponentName): string {
    const file = basename(this.file.path);
    if (name === 'vae') return `${file} holds no VAE (no first_stage_model.* tensors); pass one with --vae (a VAE .safetensors file or diffusers VAE folder)`;
    if (!this.family) return `${file} is a lone VAE; it has no ${name}. Pass it with --vae and give --model a full checkpoint or diffusers folder`;
    if (name === 'unet') return `${file} holds no U-Net (no ${UNET}* tensors); it is not a full Stable Diffusion checkpoint`;
    const want = TEXT[this.family][name === 'text_encoder' ? 0 : 1];
    if (!want) return `${file} is ${this.family.toUpperCase()}, which has no ${name}`;
    return `${file} holds no text encoder (no ${want.prefix}* tensors); it is not a full Stable Diffusion checkpoint`;
  }

  private vaePrefix(): string {
    return this.family ? VAE : this.file.has('encoder.conv_in.weight') ? '' : VAE;
  }

  private unet(): CheckpointComponent {
    const tensors = under(this.file, UNET);
    const { layersPerBlock } = unetLayersPerBlock(tensors);
    const slots = new Map<string, CheckpointSlot>();
    for (const k of tensors.keys()) {
      const name = diffusersUNetKey(k, layersPerBlock);
      if (name) slots.set(name, { key: UNET + k });
    }
    const o = this.original;
    // Family rules for what the shapes do not say; a .yaml that says it wins.
    const rule = this.family === 'sd1' ? { numHeads: 8 } : { numHeadChannels: 64 };
    const heads = o && (o.numHeadChannels !== undefined || o.numHeads !== undefined) ? { numHeads: o.numHeads, numHeadChannels: o.numHeadChannels } : rule;
    const pooled = this.family === 'sdxl' && this.has('text_encoder_2') ? (this.textEncoder(1).config.projection_dim as number | undefined) : undefined;
    const config = unetConfigFromTensors(tensors, { ...heads, sampleSize: this.sampleSize, additionTimeEmbedDim: o?.timeIdDim, pooledDim: pooled });
    return { config, weights: new CheckpointWeights(this.file, 'unet', slots) };
  }

  private vae(): CheckpointComponent {
    const prefix = this.vaePrefix();
    const tensors = under(this.file, prefix);
    const levels = vaeLevels(tensors);
    const slots = new Map<string, CheckpointSlot>();
    for (const k of tensors.keys()) slots.set(diffusersVAEKey(k, levels), { key: prefix + k });
    const config = vaeConfigFromTensors(tensors, this.sampleSize * 2 ** (levels - 1), this.scalingFactor);
    return { config, weights: new CheckpointWeights(this.file, 'vae', slots) };
  }

  private textEncoder(index: 0 | 1): CheckpointComponent {
    const { prefix, kind } = TEXT[this.family!][index]!;
    const tensors: TensorsByKey = under(this.file, prefix);
    const name = index === 0 ? 'text_encoder' : 'text_encoder_2';
    if (kind === 'clip') return { config: clipConfig(tensors, name, 'quick_gelu'), weights: new CheckpointWeights(this.file, name, clipSlots(tensors, prefix)) };
    // SD 2.x conditions on the penultimate layer (LDM's `layer: penultimate`); SDXL's bigG keeps every layer.
    const layers = this.family === 'sd2' && this.original?.openClipLayer !== 'last' ? 'penultimate' : 'all';
    return { config: openClipConfig(tensors, name, layers), weights: new CheckpointWeights(this.file, name, openClipSlots(tensors, prefix)) };
  }

  /** diffusers' scheduler config for the family (the package's copy), with the .yaml's schedule and the prediction type. */
  schedulerConfig(): Record<string, unknown> {
    const which = this.family === 'sdxl' ? 'sdxl' : this.prediction === 'v' ? 'sd2' : 'sd1';
    const config = JSON.parse(readFileSync(join(ASSETS, 'single-file', `${which}-scheduler_config.json`), 'utf8')) as Record<string, unknown>;
    const b = this.original?.betas;
    if (b?.linearStart !== undefined) config.beta_start = b.linearStart;
    if (b?.linearEnd !== undefined) config.beta_end = b.linearEnd;
    if (b?.timesteps !== undefined) config.num_train_timesteps = b.timesteps;
    config.prediction_type = this.prediction === 'v' ? 'v_prediction' : 'epsilon';
    return config;
  }

  /** Pad token of each tokenizer as A1111 / ComfyUI use them: OpenAI CLIP pads with its end token, open_clip with id 0 ("!"). */
  padToken(name: 'tokenizer' | 'tokenizer_2'): string {
    const kind = this.family ? TEXT[this.family][name === 'tokenizer' ? 0 : 1]?.kind : undefined;
    return kind === 'open_clip' ? '!' : '<|endoftext|>';
  }
}
