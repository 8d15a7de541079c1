/**
 * diffusers-named tensors → one single-file checkpoint as the original repositories and model
 * sites lay them out: LDM (SD 1.x with CLIP, SD 2.x with OpenCLIP) or SGM (SDXL, both): the
 * writing side of the name maps, for `random-model --format single-file`.
 */
import type { ModelFamily } from './checkpoint.js';
import { originalUNetKey } from './ldm-unet.js';
import { originalVAEKey, originalVAEShape } from './ldm-vae.js';
import { originalOpenClipKey } from './text-encoders.js';

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export interface DiffusersComponent {
  config: Record<string, unknown>;
  tensors: ReadonlyMap<string, NamedTensor>;
}

export interface DiffusersParts {
  unet: DiffusersComponent;
  vae: DiffusersComponent;
  textEncoder: DiffusersComponent;
  /** SDXL's CLIPTextModelWithProjection. */
  textEncoder2?: DiffusersComponent;
}

function transpose({ shape, data }: NamedTensor): NamedTensor {
  const [rows, cols] = shape as [number, number];
  return { shape: [cols, rows], data: Float32Array.from({ length: data.length }, (_, i) => data[(i % rows) * cols + Math.floor(i / rows)]!) };
}

/** `extraLayer`: SD 2.x files carry one more resblock than diffusers keeps (see below). */
function openClip(tensors: ReadonlyMap<string, NamedTensor>, extraLayer: boolean): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  const fused = new Map<string, NamedTensor[]>();
  for (const [key, t] of tensors) {
    const o = originalOpenClipKey(key);
    if (o.part === undefined) {
      out.set(o.key, o.transposed ? transpose(t) : t);
      continue;
    }
    const parts = fused.get(o.key) ?? [];
    parts[o.part] = t;
    fused.set(o.key, parts);
  }
  for (const [key, [q, k, v]] of fused) {
    if (!q || !k || !v) throw new Error(`text_encoder: ${key} needs q, k and v`);
    const data = new Float32Array(q.data.length * 3);
    [q, k, v].forEach((p, i) => data.set(p.data, i * q.data.length));
    out.set(key, { shape: [q.shape[0]! * 3, ...q.shape.slice(1)], data });
  }
  if (!extraLayer) return out;
  // SD 2.x files carry OpenCLIP's whole tower, whose last layer SD does not use; diffusers keeps one
  // layer less. As kohya's converter does, the last kept layer stands in for it.
  const last = Math.max(...[...out.keys()].map((k) => Number(/^transformer\.resblocks\.(\d+)\./.exec(k)?.[1] ?? -1)));
  for (const [key, t] of [...out]) {
    const m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(key);
    if (m && Number(m[1]) === last) out.set(`transformer.resblocks.${last + 1}.${m[2]}`, t);
  }
  return out;
}

/** The checkpoint's tensors, original names, for an SD 1.x (`sd1`), SD 2.x (`sd2`) or SDXL (`sdxl`) model. */
export function toOriginalLayout(family: ModelFamily, parts: DiffusersParts): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  const u = parts.unet.config;
  const upAttention = (u.up_block_types as string[]).map((t) => t === 'CrossAttnUpBlock2D');
  for (const [key, t] of parts.unet.tensors) out.set(`model.diffusion_model.${originalUNetKey(key, u.layers_per_block as number, upAttention)}`, t);
  const levels = (parts.vae.config.block_out_channels as number[]).length;
  for (const [key, t] of parts.vae.tensors) {
    const name = originalVAEKey(key, levels);
    out.set(`first_stage_model.${name}`, { shape: originalVAEShape(name, t.shape), data: t.data });
  }
  if (family === 'sd1') {
    for (const [key, t] of parts.textEncoder.tensors) out.set(`cond_stage_model.transformer.${key}`, t);
  } else if (family === 'sd2') {
    for (const [key, t] of openClip(parts.textEncoder.tensors, true)) out.set(`cond_stage_model.model.${key}`, t);
  } else {
    if (!parts.textEncoder2) throw new Error('an SDXL checkpoint needs both text encoders');
    for (const [key, t] of parts.textEncoder.tensors) out.set(`conditioner.embedders.0.transformer.${key}`, t);
    for (const [key, t] of openClip(parts.textEncoder2.tensors, false)) out.set(`conditioner.embedders.1.model.${key}`, t);
  }
  return out;
}

/** The LDM `.yaml` A1111 reads beside a checkpoint: what its tensors cannot say. */
export function originalConfig(family: Exclude<ModelFamily, 'sdxl'>, parts: DiffusersParts, prediction: 'epsilon' | 'v', scheduler: Record<string, unknown>): Record<string, unknown> {
  const u = parts.unet.config;
  const channels = u.block_out_channels as number[];
  const heads = (u.num_attention_heads ?? u.attention_head_dim) as number | number[];
  const perHead = Array.isArray(heads) ? channels.map((c, i) => c / heads[i]!) : undefined;
  const headParams = perHead && perHead.every((c) => c === perHead[0]) ? { num_head_channels: perHead[0] } : { num_heads: Array.isArray(heads) ? heads[0] : heads };
  return {
    model: {
      target: 'ldm.models.diffusion.ddpm.LatentDiffusion',
      params: {
        ...(prediction === 'v' ? { parameterization: 'v' } : {}),
        linear_start: scheduler.beta_start,
        linear_end: scheduler.beta_end,
        timesteps: scheduler.num_train_timesteps,
        scale_factor: parts.vae.config.scaling_factor,
        unet_config: { target: 'ldm.modules.diffusionmodules.openaimodel.UNetModel', params: { ...headParams, context_dim: u.cross_attention_dim } },
        cond_stage_config:
          family === 'sd1'
            ? { target: 'ldm.modules.encoders.modules.FrozenCLIPEmbedder' }
            : { target: 'ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder', params: { freeze: true, layer: 'penultimate' } },
      },
    },
  };
}
