/**
 * A ControlNet in one file without a config.json (`.safetensors`, or a PyTorch `.pth` / `.pt` /
 * `.ckpt` read without running it), as A1111 users have them: the
 * original layout (`control_model.*`, or the same keys without the prefix: control_v11*,
 * t2i-era SD 1.5 / 2.x files) or diffusers' names (most SDXL ControlNets). The config comes from
 * the tensor shapes; head counts from a `.yaml` beside the file (cldm's control_stage_config),
 * else from the U-Net it runs with, else the family's rule (SD 1.x 8 heads, otherwise 64
 * channels per head), as A1111 guesses it.
 */
import { basename } from 'node:path';
import type { TensorFile, TensorInfo } from '../../io/tensor-file.js';
import { openWeightsFile } from '../../io/weights-file.js';
import { UserError } from '../../errors.js';
import type { ComponentSource } from '../model-source.js';
import { prefixSummary, under } from './checkpoint.js';
import { diffusersControlNetKey, hintConvIndices } from './ldm-controlnet.js';
import { headsPerLevel, unetLayersPerBlock } from './ldm-unet.js';
import { originalConfigPath, readOriginalConfig } from './original-config.js';
import { CheckpointWeights, type CheckpointSlot } from './weights.js';

/** What the file cannot say, from the U-Net the ControlNet runs with. */
export interface ControlNetHints {
  /** Heads per level. */
  heads?: readonly number[];
  /** SDXL: width of each time id's sinusoid. */
  additionTimeEmbedDim?: number;
  /** Whether that U-Net conditions on SDXL's pooled text and time ids (text_time). */
  textTime?: boolean;
}

/** SDXL's pooled text width (OpenCLIP bigG's projection): what a text_time ControlNet's add_embedding takes before the time ids. */
const SDXL_POOLED = 1280;

const LDM_PREFIX = 'control_model.';

/** Files that look like ControlNets but are another kind, with what to say about them. */
function otherKind(file: TensorFile): string | undefined {
  const keys = [...file.tensors.keys()];
  if (file.has('difference') || keys.some((k) => k.startsWith('diff_control_model.'))) {
    return 'a "difference" ControlNet (control_*_diff), stored as the difference to a base model; use the full ControlNet file (control_v11*, control_sd15_*) instead';
  }
  if (file.has('lora_controlnet')) return 'a Control-LoRA (Stability AI control-lora); only full ControlNets are supported';
  if (keys.some((k) => k.startsWith('adapter.') || k.startsWith('body.0.'))) return 'a T2I-Adapter; only ControlNets are supported';
  if (keys.some((k) => k.startsWith('model.diffusion_model.')) && !keys.some((k) => k.startsWith(LDM_PREFIX))) {
    return 'a Stable Diffusion checkpoint, not a ControlNet; pass it with --model';
  }
  return undefined;
}

export function openControlNetFile(path: string, hints: ControlNetHints = {}): ComponentSource {
  const file = openWeightsFile(path);
  const name = basename(path);
  const other = otherKind(file);
  if (other) throw new UserError(`${name} is ${other}`);
  const slots = new Map<string, CheckpointSlot>();
  const shapes = new Map<string, number[]>();
  const add = (diffusersKey: string | undefined, t: TensorInfo): void => {
    if (diffusersKey === undefined) return;
    slots.set(diffusersKey, { key: t.name });
    shapes.set(diffusersKey, t.shape);
  };
  if (file.has('controlnet_cond_embedding.conv_in.weight')) {
    for (const t of file.tensors.values()) add(t.name, t);
  } else {
    const prefix = file.has(`${LDM_PREFIX}input_hint_block.0.weight`) ? LDM_PREFIX : file.has('input_hint_block.0.weight') ? '' : undefined;
    if (prefix === undefined) {
      throw new UserError(
        `${name}: the tensor names match no ControlNet layout todo-sd knows (found ${prefixSummary(file)}); expected the original layout ` +
          '(control_model.input_hint_block.*, zero_convs.*, middle_block_out.*) or diffusers names (controlnet_cond_embedding.*, controlnet_down_blocks.*)',
      );
    }
    const tensors = under(file, prefix);
    const { layersPerBlock } = unetLayersPerBlock(tensors);
    const hintConvs = hintConvIndices(tensors.keys());
    for (const [k, t] of tensors) add(diffusersControlNetKey(k, layersPerBlock, hintConvs), t);
  }
  const yaml = originalConfigPath(path);
  const control = yaml ? readOriginalConfig(yaml).control : undefined;
  const config = controlNetConfigFromShapes(shapes, { ...hints, numHeads: control?.numHeads, numHeadChannels: control?.numHeadChannels }, name);
  if (control?.globalAveragePooling) config.global_pool_conditions = true;
  return { config, weights: new CheckpointWeights(file, 'controlnet', slots) };
}

function countIndices(keys: Iterable<string>, prefix: string): number {
  const seen = new Set<string>();
  for (const k of keys) if (k.startsWith(prefix)) seen.add(k.slice(prefix.length).split('.')[0]!);
  return seen.size;
}

/** diffusers' ControlNetModel config from the shapes of its tensors (diffusers names). */
export function controlNetConfigFromShapes(
  shapes: ReadonlyMap<string, number[]>,
  hints: ControlNetHints & { numHeads?: number; numHeadChannels?: number },
  name: string,
): Record<string, unknown> {
  const shape = (k: string): number[] => {
    const s = shapes.get(k);
    if (!s) throw new UserError(`${name}: tensor "${k}" is missing; the ControlNet is incomplete`);
    return s;
  };
  const keys = [...shapes.keys()];
  const levels = countIndices(keys, 'down_blocks.');
  const layersPerBlock = countIndices(keys, 'down_blocks.0.resnets.');
  if (levels < 1 || layersPerBlock < 1) throw new UserError(`${name}: no down blocks found; the ControlNet is incomplete`);
  const depth = (prefix: string): number => countIndices(keys, `${prefix}.transformer_blocks.`);
  const channels = Array.from({ length: levels }, (_, i) => shape(`down_blocks.${i}.resnets.0.conv2.weight`)[0]!);
  const down = Array.from({ length: levels }, (_, i) => depth(`down_blocks.${i}.attentions.0`));
  const midDepth = depth('mid_block.attentions.0');
  const midType = midDepth > 0 ? 'UNetMidBlock2DCrossAttn' : shapes.has('mid_block.resnets.0.conv1.weight') ? 'UNetMidBlock2D' : null;
  const toK = keys.find((k) => k.endsWith('.attn2.to_k.weight'));
  const crossDim = toK ? shape(toK)[1]! : undefined;
  const projIn = keys.find((k) => /\.attentions\.0\.proj_in\.weight$/.test(k));
  const embedding = [shape('controlnet_cond_embedding.conv_in.weight')[0]!];
  const blocks = countIndices(keys, 'controlnet_cond_embedding.blocks.');
  for (let i = 1; i < blocks; i += 2) embedding.push(shape(`controlnet_cond_embedding.blocks.${i}.weight`)[0]!);

  const attends = channels.map((_, level) => down[level]! > 0 || (level === levels - 1 && midDepth > 0));
  const fromYaml = hints.numHeads !== undefined || hints.numHeadChannels !== undefined;
  const heads = !fromYaml && hints.heads?.length === levels
    ? channels.map((_, i) => (attends[i] ? hints.heads![i]! : 1))
    : headsPerLevel(channels, attends, fromYaml ? hints : crossDim === 768 ? { numHeads: 8 } : { numHeadChannels: 64 }, name);

  const config: Record<string, unknown> = {
    _class_name: 'ControlNetModel',
    in_channels: shape('conv_in.weight')[1],
    conditioning_channels: shape('controlnet_cond_embedding.conv_in.weight')[1],
    conditioning_embedding_out_channels: embedding,
    block_out_channels: channels,
    down_block_types: down.map((d) => (d > 0 ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    mid_block_type: midType,
    layers_per_block: layersPerBlock,
    attention_head_dim: heads,
    cross_attention_dim: crossDim ?? 768,
    use_linear_projection: projIn !== undefined && shape(projIn).length === 2,
    // Levels without attention take 1: unused there, and diffusers' parser wants a positive count.
    transformer_layers_per_block: down.map((d, level) => (level === levels - 1 && d === 0 && midDepth > 0 ? midDepth : d || 1)),
    norm_num_groups: 32,
    norm_eps: 1e-5,
    flip_sin_to_cos: true,
    freq_shift: 0,
  };
  if (shapes.has('add_embedding.linear_1.weight')) {
    if (hints.textTime === false) throw new UserError(`${name} is an SDXL ControlNet (it takes SDXL's pooled text and time ids), but the model is not SDXL: use a ControlNet made for this model's family`);
    const [, admIn] = shape('add_embedding.linear_1.weight') as [number, number];
    const timeDim = hints.additionTimeEmbedDim ?? (admIn - SDXL_POOLED) / 6;
    if (!Number.isInteger(timeDim) || timeDim <= 0) {
      throw new UserError(`${name}: add_embedding takes ${admIn} inputs, which do not split into SDXL's pooled text (${SDXL_POOLED}) and 6 time ids; load it with the U-Net it belongs to`);
    }
    config.addition_embed_type = 'text_time';
    config.addition_time_embed_dim = timeDim;
    config.projection_class_embeddings_input_dim = admIn;
  }
  return config;
}
