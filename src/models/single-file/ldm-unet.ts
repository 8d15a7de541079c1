/**
 * The original U-Net layout (CompVis `openaimodel.UNetModel`, also SGM's for SDXL): key names
 * mapped to diffusers' UNet2DConditionModel, and the diffusers config read off the tensor
 * shapes. `input_blocks.0` is conv_in; each level then holds `layers_per_block` entries of
 * (ResBlock[, SpatialTransformer]) and, except the last, one Downsample; `output_blocks` hold
 * `layers_per_block + 1` entries per level, the last with an Upsample.
 */
import type { TensorInfo } from '../../io/safetensors.js';

/** ResBlock parts: original name → diffusers'. */
const RESNET_NAMES: [string, string][] = [
  ['in_layers.0.', 'norm1.'],
  ['in_layers.2.', 'conv1.'],
  ['out_layers.0.', 'norm2.'],
  ['out_layers.3.', 'conv2.'],
  ['emb_layers.1.', 'time_emb_proj.'],
  ['skip_connection.', 'conv_shortcut.'],
];

function resnet(rest: string): string | undefined {
  const hit = RESNET_NAMES.find(([from]) => rest.startsWith(from));
  return hit ? hit[1] + rest.slice(hit[0].length) : undefined;
}

function originalResnet(rest: string): string {
  const hit = RESNET_NAMES.find(([, to]) => rest.startsWith(to));
  if (!hit) throw new Error(`unet: no original-layout name for resnet part "${rest}"`);
  return hit[0] + rest.slice(hit[1].length);
}

const FIXED: [string, string][] = [
  ['time_embed.0.', 'time_embedding.linear_1.'],
  ['time_embed.2.', 'time_embedding.linear_2.'],
  ['label_emb.0.0.', 'add_embedding.linear_1.'],
  ['label_emb.0.2.', 'add_embedding.linear_2.'],
  ['input_blocks.0.0.', 'conv_in.'],
  ['out.0.', 'conv_norm_out.'],
  ['out.2.', 'conv_out.'],
];

/** A checkpoint U-Net key (prefix removed) → its diffusers name, or undefined for keys SD does not use. */
export function diffusersUNetKey(key: string, layersPerBlock: number): string | undefined {
  for (const [from, to] of FIXED) if (key.startsWith(from)) return to + key.slice(from.length);
  let m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const i = Number(m[1]) - 1;
    const level = Math.floor(i / (layersPerBlock + 1));
    const j = i % (layersPerBlock + 1);
    if (m[2] === '0' && m[3]!.startsWith('op.')) return `down_blocks.${level}.downsamplers.0.conv.${m[3]!.slice(3)}`;
    if (m[2] === '0') return prefixed(`down_blocks.${level}.resnets.${j}.`, resnet(m[3]!));
    if (m[2] === '1') return `down_blocks.${level}.attentions.${j}.${m[3]}`;
    return undefined;
  }
  m = /^middle_block\.(\d)\.(.+)$/.exec(key);
  if (m) {
    if (m[1] === '1') return `mid_block.attentions.0.${m[2]}`;
    return prefixed(`mid_block.resnets.${m[1] === '0' ? 0 : 1}.`, resnet(m[2]!));
  }
  m = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const i = Number(m[1]);
    const level = Math.floor(i / (layersPerBlock + 1));
    const j = i % (layersPerBlock + 1);
    if (m[2] !== '0' && /^conv\.(weight|bias)$/.test(m[3]!)) return `up_blocks.${level}.upsamplers.0.${m[3]}`;
    if (m[2] === '0') return prefixed(`up_blocks.${level}.resnets.${j}.`, resnet(m[3]!));
    if (m[2] === '1') return `up_blocks.${level}.attentions.${j}.${m[3]}`;
  }
  return undefined;
}

/**
 * The inverse: a diffusers U-Net key → its name in the original layout (for writing checkpoints).
 * `upAttention[level]`: whether up block `level` has attentions (its upsampler then sits at index 2).
 */
export function originalUNetKey(key: string, layersPerBlock: number, upAttention: readonly boolean[]): string {
  for (const [to, from] of FIXED) if (key.startsWith(from)) return to + key.slice(from.length);
  const per = layersPerBlock + 1;
  let m = /^down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const level = Number(m[1]);
    if (m[2] === 'downsamplers') return `input_blocks.${1 + level * per + layersPerBlock}.0.op.${m[4]!.replace(/^conv\./, '')}`;
    const i = 1 + level * per + Number(m[3]);
    return m[2] === 'resnets' ? `input_blocks.${i}.0.${originalResnet(m[4]!)}` : `input_blocks.${i}.1.${m[4]}`;
  }
  m = /^mid_block\.(resnets|attentions)\.(\d)\.(.+)$/.exec(key);
  if (m) return m[1] === 'attentions' ? `middle_block.1.${m[3]}` : `middle_block.${m[2] === '0' ? 0 : 2}.${originalResnet(m[3]!)}`;
  m = /^up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const level = Number(m[1]);
    if (m[2] === 'upsamplers') return `output_blocks.${level * per + layersPerBlock}.${upAttention[level] ? 2 : 1}.${m[4]}`;
    const i = level * per + Number(m[3]);
    return m[2] === 'resnets' ? `output_blocks.${i}.0.${originalResnet(m[4]!)}` : `output_blocks.${i}.1.${m[4]}`;
  }
  throw new Error(`unet: no original-layout name for "${key}"`);
}

function prefixed(prefix: string, rest: string | undefined): string | undefined {
  return rest === undefined ? undefined : prefix + rest;
}

/** What the tensors cannot say, from the `.yaml` beside the checkpoint or the family's rules. */
export interface UNetHints {
  /** `num_heads` (SD 1.x: 8) or `num_head_channels` (SD 2.x, SDXL: 64); the first that is set and not -1 wins, channels first. */
  numHeads?: number;
  numHeadChannels?: number;
  /** Latent size the model was trained at (diffusers' `sample_size`). */
  sampleSize: number;
  /** SDXL: width of each time id's sinusoidal embedding; default: derived from the shapes and `pooledDim`. */
  additionTimeEmbedDim?: number;
  /** SDXL: width of the pooled text embedding (the second text encoder's projection). */
  pooledDim?: number;
}

/** Tensors of the U-Net, keyed without the checkpoint prefix. */
export type TensorsByKey = ReadonlyMap<string, TensorInfo>;

function countIndices(tensors: TensorsByKey, prefix: string): number {
  const seen = new Set<string>();
  for (const k of tensors.keys()) {
    if (k.startsWith(prefix)) seen.add(k.slice(prefix.length).split('.')[0]!);
  }
  return seen.size;
}

export function unetLayersPerBlock(tensors: TensorsByKey): { levels: number; layersPerBlock: number } {
  const inputs = countIndices(tensors, 'input_blocks.');
  const downsamplers = [...tensors.keys()].filter((k) => /^input_blocks\.\d+\.0\.op\.weight$/.test(k)).length;
  const levels = downsamplers + 1;
  const layersPerBlock = (inputs - 1 - downsamplers) / levels;
  if (inputs < 2 || !Number.isInteger(layersPerBlock) || layersPerBlock < 1) {
    throw new Error(`unet: ${inputs} input_blocks with ${downsamplers} downsamplers do not form a U-Net (levels × resnets + downsamplers + conv_in)`);
  }
  return { levels, layersPerBlock };
}

/**
 * Heads per level from the head hints (channels per head first, then heads), for the levels
 * that attend; the others take 1 (unused there, and diffusers' parser wants a positive count).
 */
export function headsPerLevel(channels: readonly number[], attends: readonly boolean[], hints: Pick<UNetHints, 'numHeads' | 'numHeadChannels'>, what = 'unet'): number[] {
  return channels.map((c, level) => {
    if (!attends[level]) return 1;
    if (hints.numHeadChannels !== undefined && hints.numHeadChannels !== -1) {
      if (c % hints.numHeadChannels !== 0) throw new Error(`${what}: ${c} channels at level ${level} do not split into heads of ${hints.numHeadChannels} channels (num_head_channels)`);
      return c / hints.numHeadChannels;
    }
    if (hints.numHeads === undefined || c % hints.numHeads !== 0) {
      throw new Error(`${what}: ${c} channels at level ${level} do not split into ${hints.numHeads ?? '?'} heads (num_heads); set num_heads or num_head_channels in the checkpoint's .yaml`);
    }
    return hints.numHeads;
  });
}

/** diffusers' UNet2DConditionModel config for the checkpoint's U-Net. */
export function unetConfigFromTensors(tensors: TensorsByKey, hints: UNetHints): Record<string, unknown> {
  const shape = (k: string): number[] => {
    const t = tensors.get(k);
    if (!t) throw new Error(`unet: tensor "${k}" is missing from the checkpoint; the U-Net is incomplete`);
    return t.shape;
  };
  const { levels, layersPerBlock } = unetLayersPerBlock(tensors);
  const depth = (block: string): number => countIndices(tensors, `${block}.1.transformer_blocks.`);
  const channels: number[] = [];
  const down: number[] = [];
  const up: number[] = [];
  let linearProjection = false;
  let contextDim: number | undefined;
  for (let level = 0; level < levels; level++) {
    const first = `input_blocks.${1 + level * (layersPerBlock + 1)}`;
    channels.push(shape(`${first}.0.out_layers.3.weight`)[0]!);
    down.push(depth(first));
    up.push(depth(`output_blocks.${level * (layersPerBlock + 1)}`));
    if (tensors.has(`${first}.1.proj_in.weight`)) {
      linearProjection = shape(`${first}.1.proj_in.weight`).length === 2;
      contextDim = shape(`${first}.1.transformer_blocks.0.attn2.to_k.weight`)[1];
    }
  }
  const midDepth = depth('middle_block');
  if (midDepth === 0) throw new Error('unet: middle_block.1 is not a transformer; only U-Nets with cross-attention in the middle block (SD 1.x, 2.x, SDXL) are supported');
  contextDim ??= shape('middle_block.1.transformer_blocks.0.attn2.to_k.weight')[1];

  const attends = channels.map((_, level) => down[level]! > 0 || up[levels - 1 - level]! > 0 || level === levels - 1);
  const heads = headsPerLevel(channels, attends, hints);

  const config: Record<string, unknown> = {
    _class_name: 'UNet2DConditionModel',
    in_channels: shape('input_blocks.0.0.weight')[1],
    out_channels: shape('out.2.weight')[0],
    block_out_channels: channels,
    down_block_types: down.map((d) => (d > 0 ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    up_block_types: up.map((d) => (d > 0 ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
    mid_block_type: 'UNetMidBlock2DCrossAttn',
    layers_per_block: layersPerBlock,
    attention_head_dim: heads,
    cross_attention_dim: contextDim,
    use_linear_projection: linearProjection,
    // Levels without attention take 1: the value is unused there, and diffusers' parser wants a positive count.
    transformer_layers_per_block: down.map((d, level) => (level === levels - 1 && d === 0 ? midDepth : d || 1)),
    norm_num_groups: 32,
    norm_eps: 1e-5,
    flip_sin_to_cos: true,
    freq_shift: 0,
    sample_size: hints.sampleSize,
  };
  const reverse = up.map((d) => d || 1);
  const defaultReverse = [...(config.transformer_layers_per_block as number[])].reverse();
  if (reverse.some((d, i) => d !== defaultReverse[i])) config.reverse_transformer_layers_per_block = reverse;

  if (tensors.has('label_emb.0.0.weight')) {
    const [, admIn] = shape('label_emb.0.0.weight') as [number, number];
    let timeDim = hints.additionTimeEmbedDim;
    if (timeDim === undefined && hints.pooledDim !== undefined) timeDim = (admIn - hints.pooledDim) / 6;
    if (timeDim === undefined || !Number.isInteger(timeDim) || timeDim <= 0) {
      throw new Error(`unet: label_emb takes ${admIn} inputs, which does not split into the pooled text embedding and 6 time ids; give the checkpoint its .yaml`);
    }
    config.addition_embed_type = 'text_time';
    config.addition_time_embed_dim = timeDim;
    config.projection_class_embeddings_input_dim = admIn;
  }
  return config;
}
