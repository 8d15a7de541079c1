/**
 * The original VAE layout (LDM / SGM `AutoencoderKL`): key names mapped to diffusers'
 * AutoencoderKL, and its config read off the shapes. The decoder's `up` levels are numbered
 * from the lowest resolution in diffusers and from the highest in LDM; the mid-block attention
 * is a 1×1 convolution there (`[C, C, 1, 1]`, the same bytes as diffusers' `[C, C]` Linear).
 */
import type { TensorsByKey } from './ldm-unet.js';

const RENAMES: [RegExp, string][] = [
  [/\.nin_shortcut\./, '.conv_shortcut.'],
  [/\.norm_out\./, '.conv_norm_out.'],
  [/\.mid\.block_1\./, '.mid_block.resnets.0.'],
  [/\.mid\.block_2\./, '.mid_block.resnets.1.'],
  [/\.mid\.attn_1\.norm\./, '.mid_block.attentions.0.group_norm.'],
  [/\.mid\.attn_1\.([qkv])\./, '.mid_block.attentions.0.to_$1.'],
  [/\.mid\.attn_1\.proj_out\./, '.mid_block.attentions.0.to_out.0.'],
  [/^encoder\.down\.(\d+)\.block\./, 'encoder.down_blocks.$1.resnets.'],
  [/^encoder\.down\.(\d+)\.downsample\./, 'encoder.down_blocks.$1.downsamplers.0.'],
];

/** A checkpoint VAE key (prefix removed) → its diffusers name. */
export function diffusersVAEKey(key: string, levels: number): string {
  let k = key;
  for (const [re, to] of RENAMES) k = k.replace(re, to);
  return k.replace(/^decoder\.up\.(\d+)\.(block|upsample)\./, (_, i: string, part: string) => {
    const level = levels - 1 - Number(i);
    return `decoder.up_blocks.${level}.${part === 'block' ? 'resnets' : 'upsamplers.0'}.`;
  });
}

const ORIGINAL_NAMES: [RegExp, string][] = [
  [/\.conv_shortcut\./, '.nin_shortcut.'],
  [/\.conv_norm_out\./, '.norm_out.'],
  [/\.mid_block\.resnets\.0\./, '.mid.block_1.'],
  [/\.mid_block\.resnets\.1\./, '.mid.block_2.'],
  [/\.mid_block\.attentions\.0\.group_norm\./, '.mid.attn_1.norm.'],
  [/\.mid_block\.attentions\.0\.to_([qkv])\./, '.mid.attn_1.$1.'],
  [/\.mid_block\.attentions\.0\.to_out\.0\./, '.mid.attn_1.proj_out.'],
  [/^encoder\.down_blocks\.(\d+)\.resnets\./, 'encoder.down.$1.block.'],
  [/^encoder\.down_blocks\.(\d+)\.downsamplers\.0\./, 'encoder.down.$1.downsample.'],
];

/** The inverse: a diffusers VAE key → its original name (for writing checkpoints). */
export function originalVAEKey(key: string, levels: number): string {
  let k = key;
  for (const [re, to] of ORIGINAL_NAMES) k = k.replace(re, to);
  return k.replace(/^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\./, (_, i: string, part: string) => {
    return `decoder.up.${levels - 1 - Number(i)}.${part === 'resnets' ? 'block' : 'upsample'}.`;
  });
}

/** Original VAE attention projections are 1×1 convolutions: `[C, C]` is written `[C, C, 1, 1]`. */
export function originalVAEShape(originalKey: string, shape: readonly number[]): number[] {
  return /\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(originalKey) ? [...shape, 1, 1] : [...shape];
}

function count(tensors: TensorsByKey, re: RegExp): number {
  return [...tensors.keys()].filter((k) => re.test(k)).length;
}

export function vaeLevels(tensors: TensorsByKey): number {
  return count(tensors, /^encoder\.down\.\d+\.block\.0\.conv1\.weight$/);
}

/** diffusers' AutoencoderKL config; `scalingFactor` when the family or the .yaml states it. */
export function vaeConfigFromTensors(tensors: TensorsByKey, sampleSize: number, scalingFactor?: number): Record<string, unknown> {
  const shape = (k: string): number[] => {
    const t = tensors.get(k);
    if (!t) throw new Error(`vae: tensor "${k}" is missing from the checkpoint; the VAE is incomplete`);
    return t.shape;
  };
  const levels = vaeLevels(tensors);
  if (levels === 0) throw new Error('vae: no encoder.down.N.block tensors; the VAE is incomplete');
  const channels = Array.from({ length: levels }, (_, i) => shape(`encoder.down.${i}.block.0.conv2.weight`)[0]!);
  return {
    _class_name: 'AutoencoderKL',
    in_channels: shape('encoder.conv_in.weight')[1],
    out_channels: shape('decoder.conv_out.weight')[0],
    latent_channels: shape('decoder.conv_in.weight')[1],
    block_out_channels: channels,
    down_block_types: channels.map(() => 'DownEncoderBlock2D'),
    up_block_types: channels.map(() => 'UpDecoderBlock2D'),
    layers_per_block: count(tensors, /^encoder\.down\.0\.block\.\d+\.conv1\.weight$/),
    norm_num_groups: 32,
    sample_size: sampleSize,
    ...(scalingFactor !== undefined ? { scaling_factor: scalingFactor } : {}),
  };
}
