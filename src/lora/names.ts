/**
 * Which weight a LoRA module name points at. LoRA files name a module in one of three ways:
 * kohya-ss's underscored diffusers name (`down_blocks_0_attentions_0_proj_in`), kohya-ss's
 * underscored original-SD (LDM) name (`input_blocks_1_1_proj_in`), or diffusers/PEFT's dotted
 * diffusers name. The tables are built from the weights the component's graph actually uses.
 */
import type { UNetConfig } from '../models/unet.js';

/** A weight a LoRA may change: its key and shape. */
export interface LoraTarget {
  key: string;
  shape: readonly number[];
}

/** LoRA-able weights (matrices and convolution kernels) by every name a LoRA may use for them. */
export type LoraTargets = ReadonlyMap<string, LoraTarget>;

/** Every `<module>.weight` of rank 2 or 4, under its dotted and underscored names (and an alias's underscored form). */
function targets(weights: ReadonlyMap<string, readonly number[]>, alias?: (module: string) => string | undefined): LoraTargets {
  const out = new Map<string, LoraTarget>();
  for (const [key, shape] of weights) {
    if (!key.endsWith('.weight') || (shape.length !== 2 && shape.length !== 4)) continue;
    const module = key.slice(0, -'.weight'.length);
    const target = { key, shape };
    out.set(module, target);
    out.set(module.replace(/\./g, '_'), target);
    const other = alias?.(module);
    if (other) out.set(other.replace(/\./g, '_'), target);
  }
  return out;
}

export function textEncoderLoraTargets(weights: ReadonlyMap<string, readonly number[]>): LoraTargets {
  return targets(weights);
}

export function unetLoraTargets(cfg: UNetConfig, weights: ReadonlyMap<string, readonly number[]>): LoraTargets {
  return targets(weights, (m) => ldmModuleName(cfg, m));
}

/** diffusers ResnetBlock2D sub-layers under their LDM ResBlock names. */
const RESNET_LDM: Record<string, string> = {
  norm1: 'in_layers.0',
  conv1: 'in_layers.2',
  time_emb_proj: 'emb_layers.1',
  norm2: 'out_layers.0',
  conv2: 'out_layers.3',
  conv_shortcut: 'skip_connection',
};

const FIXED_LDM: Record<string, string> = {
  conv_in: 'input_blocks.0.0',
  'time_embedding.linear_1': 'time_embed.0',
  'time_embedding.linear_2': 'time_embed.2',
  'add_embedding.linear_1': 'label_emb.0.0',
  'add_embedding.linear_2': 'label_emb.0.2',
  conv_norm_out: 'out.0',
  conv_out: 'out.2',
};

/**
 * The original Stable Diffusion (LDM / sgm) name of a diffusers U-Net module. The LDM tree numbers
 * its blocks in sequence, so the numbers follow from `layers_per_block` and the block types:
 * per level `layers_per_block` × [ResBlock, SpatialTransformer] and a Downsample except after
 * the last level; in the output blocks `layers_per_block + 1` × [ResBlock, SpatialTransformer]
 * per level, the Upsample after the attention (index 2) or, in a block without one, at index 1.
 */
export function ldmModuleName(cfg: UNetConfig, module: string): string | undefined {
  const fixed = FIXED_LDM[module];
  if (fixed) return fixed;
  const per = cfg.layersPerBlock + 1;
  const inner = (kind: string, rest: string): string => {
    if (kind === 'attentions') return `1.${rest}`;
    const [sub, ...tail] = rest.split('.');
    const mapped = RESNET_LDM[sub!];
    return mapped ? `0.${[mapped, ...tail].join('.')}` : `0.${rest}`;
  };
  let m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(module);
  if (m) return `input_blocks.${1 + Number(m[1]) * per + Number(m[3])}.${inner(m[2]!, m[4]!)}`;
  m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(module);
  if (m) return `input_blocks.${(Number(m[1]) + 1) * per}.0.op`;
  m = /^mid_block\.resnets\.(\d+)\.(.+)$/.exec(module);
  if (m) return `middle_block.${2 * Number(m[1])}.${inner('resnets', m[2]!).slice(2)}`;
  m = /^mid_block\.attentions\.0\.(.+)$/.exec(module);
  if (m) return `middle_block.1.${m[1]}`;
  m = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(module);
  if (m) return `output_blocks.${Number(m[1]) * per + Number(m[3])}.${inner(m[2]!, m[4]!)}`;
  m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(module);
  if (m) {
    const i = Number(m[1]);
    const withAttention = cfg.upBlockTypes[i] === 'CrossAttnUpBlock2D';
    return `output_blocks.${i * per + cfg.layersPerBlock}.${withAttention ? 2 : 1}.conv`;
  }
  return undefined;
}
