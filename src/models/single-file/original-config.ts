/**
 * The original LDM / SGM config (`model.params` of a `.yaml`) that AUTOMATIC1111 reads from a
 * file with the checkpoint's name beside it: what the tensors cannot say (head counts,
 * v-prediction, the latent scale, the noise schedule, which text layer conditions).
 */
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { UserError } from '../../errors.js';

export interface OriginalConfig {
  path: string;
  numHeads?: number;
  numHeadChannels?: number;
  /** 'v' when the model predicts v (LDM `parameterization: v`, SGM `VScaling`). */
  parameterization?: 'eps' | 'v';
  scaleFactor?: number;
  betas: { linearStart?: number; linearEnd?: number; timesteps?: number };
  /** LDM's OpenCLIP embedder: 'penultimate' (SD 2.x) or 'last'. */
  openClipLayer?: 'penultimate' | 'last';
  /** SGM: output width of each size / crop embedder (SDXL's addition_time_embed_dim). */
  timeIdDim?: number;
  /** A ControlNet's `.yaml` (cldm's `control_stage_config`): its heads, and the shuffle model's global average pooling. */
  control?: { numHeads?: number; numHeadChannels?: number; globalAveragePooling: boolean };
}

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** `model.safetensors` → `model.yaml`, when it exists. */
export function originalConfigPath(checkpoint: string): string | undefined {
  const path = checkpoint.replace(/\.[^./\\]+$/, '') + '.yaml';
  return existsSync(path) ? path : undefined;
}

export function readOriginalConfig(path: string): OriginalConfig {
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`${path}: not a readable YAML file (${(e as Error).message}); fix it or move it away from the checkpoint`);
  }
  const params = obj(obj(obj(doc)?.model)?.params);
  if (!params) throw new UserError(`${path}: no model.params section; expected an LDM / SGM config such as v1-inference.yaml`);
  const unet = obj(obj(params.unet_config ?? params.network_config)?.params) ?? {};
  const scaling = String(obj(obj(obj(params.denoiser_config)?.params)?.scaling_config)?.target ?? '');
  const parameterization = params.parameterization === 'v' || scaling.endsWith('.VScaling') ? 'v' : 'eps';
  const layer = obj(obj(params.cond_stage_config)?.params)?.layer;
  const embedders = obj(obj(params.conditioner_config)?.params)?.emb_models;
  const timeEmbedder = Array.isArray(embedders)
    ? embedders.map(obj).find((e) => String(e?.target ?? '').endsWith('.ConcatTimestepEmbedderND'))
    : undefined;
  const control = obj(obj(params.control_stage_config)?.params);
  return {
    path,
    numHeads: num(unet.num_heads),
    numHeadChannels: num(unet.num_head_channels),
    parameterization,
    scaleFactor: num(params.scale_factor),
    betas: { linearStart: num(params.linear_start), linearEnd: num(params.linear_end), timesteps: num(params.timesteps) },
    openClipLayer: layer === 'last' || layer === 'penultimate' ? layer : undefined,
    timeIdDim: num(obj(timeEmbedder?.params)?.outdim),
    ...(control && { control: { numHeads: num(control.num_heads), numHeadChannels: num(control.num_head_channels), globalAveragePooling: control.global_average_pooling === true } }),
  };
}
