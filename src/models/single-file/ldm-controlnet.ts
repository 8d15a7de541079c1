/**
 * The original ControlNet layout (lllyasviel's `cldm.ControlNet`, the `control_v11*` files
 * A1111 users have): the U-Net's encoder names (`time_embed`, `input_blocks`, `middle_block`,
 * `label_emb`; mapped as in ldm-unet.ts) plus `input_hint_block.N` (the conditioning
 * embedding: convs at even indices, SiLUs between), `zero_convs.N.0` (controlnet_down_blocks.N)
 * and `middle_block_out.0` (controlnet_mid_block).
 */
import { diffusersUNetKey, originalUNetKey } from './ldm-unet.js';

/** `input_hint_block` indices of the convolutions, in order: conv_in, blocks…, conv_out. */
export function hintConvIndices(keys: Iterable<string>): number[] {
  const seen = new Set<number>();
  for (const k of keys) {
    const m = /^input_hint_block\.(\d+)\.weight$/.exec(k);
    if (m) seen.add(Number(m[1]));
  }
  return [...seen].sort((a, b) => a - b);
}

/** A ControlNet key (prefix removed) → its diffusers name, or undefined for keys a ControlNet does not use. */
export function diffusersControlNetKey(key: string, layersPerBlock: number, hintConvs: readonly number[]): string | undefined {
  let m = /^input_hint_block\.(\d+)\.(weight|bias)$/.exec(key);
  if (m) {
    const i = hintConvs.indexOf(Number(m[1]));
    if (i < 0) return undefined;
    const part = i === 0 ? 'conv_in' : i === hintConvs.length - 1 ? 'conv_out' : `blocks.${i - 1}`;
    return `controlnet_cond_embedding.${part}.${m[2]}`;
  }
  m = /^zero_convs\.(\d+)\.0\.(weight|bias)$/.exec(key);
  if (m) return `controlnet_down_blocks.${m[1]}.${m[2]}`;
  m = /^middle_block_out\.0\.(weight|bias)$/.exec(key);
  if (m) return `controlnet_mid_block.${m[1]}`;
  return diffusersUNetKey(key, layersPerBlock);
}

/** The inverse, for writing the original layout: `blocks` is the conditioning embedding's block count. */
export function originalControlNetKey(key: string, layersPerBlock: number, blocks: number): string {
  let m = /^controlnet_cond_embedding\.(conv_in|conv_out|blocks\.(\d+))\.(weight|bias)$/.exec(key);
  if (m) {
    const index = m[1] === 'conv_in' ? 0 : m[1] === 'conv_out' ? 2 * (blocks + 1) : 2 * (Number(m[2]) + 1);
    return `input_hint_block.${index}.${m[3]}`;
  }
  m = /^controlnet_down_blocks\.(\d+)\.(weight|bias)$/.exec(key);
  if (m) return `zero_convs.${m[1]}.0.${m[2]}`;
  m = /^controlnet_mid_block\.(weight|bias)$/.exec(key);
  if (m) return `middle_block_out.0.${m[1]}`;
  return originalUNetKey(key, layersPerBlock, []);
}
