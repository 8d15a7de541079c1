/**
 * madebyollin's TAESD files (taesd.py): `taesd_encoder.safetensors` and `taesd_decoder.safetensors`
 * each hold one nn.Sequential by index (`0.weight`, `1.conv.0.weight`, …). The decoder's index 0
 * is its parameter-free Clamp (diffusers applies it in DecoderTiny.forward instead), so its
 * modules sit one index above diffusers' `decoder.layers`; the encoder's indices are diffusers'.
 * ComfyUI's combined files put both in one file under `taesd_encoder.` / `taesd_decoder.`.
 * The config is read off the keys and shapes.
 */
import type { TensorsByKey } from './ldm-unet.js';

export type TinyPart = 'encoder' | 'decoder';

/** How far madebyollin's Sequential index is from diffusers' `layers` index. */
const SHIFT: Record<TinyPart, number> = { encoder: 0, decoder: 1 };

/** ComfyUI's prefixes for both halves in one file. */
export const COMBINED_PREFIX: Record<TinyPart, string> = { encoder: 'taesd_encoder.', decoder: 'taesd_decoder.' };

const INDEXED = /^(\d+)\.(.+)$/;

/** An original key of one half (prefix removed) → its diffusers key, or undefined when it is no indexed module. */
export function diffusersTinyVAEKey(part: TinyPart, key: string): string | undefined {
  const m = INDEXED.exec(key);
  if (!m) return undefined;
  return `${part}.layers.${Number(m[1]) - SHIFT[part]}.${m[2]!}`;
}

/** The inverse, for writing madebyollin's files: `decoder.layers.2.conv.0.weight` → decoder, `3.conv.0.weight`. */
export function originalTinyVAEKey(key: string): { part: TinyPart; key: string } {
  const m = /^(encoder|decoder)\.layers\.(\d+)\.(.+)$/.exec(key);
  if (!m) throw new Error(`"${key}" is not an AutoencoderTiny weight (encoder.layers.N.* / decoder.layers.N.*)`);
  const part = m[1] as TinyPart;
  return { part, key: `${Number(m[2]) + SHIFT[part]}.${m[3]!}` };
}

/** Which half a file of bare indices holds: the encoder's first module (index 0) has weights, the decoder's (Clamp) none. */
export function tinyVAEPartOf(tensors: TensorsByKey): TinyPart | undefined {
  const keys = [...tensors.keys()];
  if (keys.length === 0 || !keys.every((k) => INDEXED.test(k))) return undefined;
  if (tensors.has('0.weight')) return 'encoder';
  return tensors.has('1.weight') ? 'decoder' : undefined;
}

/** One half's tensors under diffusers' `layers` indices: index → the shapes of its `weight` keys. */
function byIndex(part: TinyPart, tensors: TensorsByKey): Map<number, Map<string, number[]>> {
  const out = new Map<number, Map<string, number[]>>();
  for (const [key, t] of tensors) {
    const m = INDEXED.exec(key);
    if (!m) continue;
    const i = Number(m[1]) - SHIFT[part];
    if (!out.has(i)) out.set(i, new Map());
    out.get(i)!.set(m[2]!, t.shape);
  }
  return out;
}

function shapeOf(layers: Map<number, Map<string, number[]>>, i: number, name: string, part: TinyPart): number[] {
  const s = layers.get(i)?.get(name);
  if (!s) throw new Error(`taesd ${part}: module ${i + SHIFT[part]} has no ${name} tensor; the file is not a TAESD ${part} (or is incomplete)`);
  return s;
}

/** How many AutoencoderTinyBlocks (modules with `conv.0.weight`) follow one another from index `i`. */
function blocksFrom(layers: Map<number, Map<string, number[]>>, i: number): number {
  let n = 0;
  while (layers.get(i + n)?.has('conv.0.weight')) n++;
  return n;
}

/** DecoderTiny's levels from its modules: conv, act, then per level blocks, [upsample, conv] or the final conv. */
function decoderConfig(tensors: TensorsByKey): Record<string, unknown> {
  const layers = byIndex('decoder', tensors);
  const first = shapeOf(layers, 0, 'weight', 'decoder');
  const blocks: number[] = [];
  const channels: number[] = [];
  let i = 2;
  for (;;) {
    const n = blocksFrom(layers, i);
    blocks.push(n);
    i += n;
    if (layers.has(i)) {
      // The final conv follows the last level's blocks directly.
      const last = shapeOf(layers, i, 'weight', 'decoder');
      channels.push(last[1]!);
      return { latent_channels: first[1], out_channels: last[0], decoder_block_out_channels: channels, num_decoder_blocks: blocks };
    }
    // An Upsample (no weights), then the level's conv.
    channels.push(shapeOf(layers, i + 1, 'weight', 'decoder')[1]!);
    i += 2;
  }
}

/** EncoderTiny's levels: the first conv, then per level blocks, then a stride-2 conv or, last, the conv to the latents. */
function encoderConfig(tensors: TensorsByKey): Record<string, unknown> {
  const layers = byIndex('encoder', tensors);
  const lastIndex = Math.max(...layers.keys());
  const first = shapeOf(layers, 0, 'weight', 'encoder');
  const blocks: number[] = [];
  const channels: number[] = [first[0]!];
  let i = 1;
  for (;;) {
    const n = blocksFrom(layers, i);
    blocks.push(n);
    i += n;
    const conv = shapeOf(layers, i, 'weight', 'encoder');
    if (i === lastIndex) return { in_channels: first[1], latent_channels: conv[0], encoder_block_out_channels: channels, num_encoder_blocks: blocks };
    channels.push(conv[0]!);
    i++;
  }
}

/**
 * diffusers' AutoencoderTiny config for the halves at hand (each keyed without prefix, original
 * indices). A lone half mirrors its levels onto the other, which it never runs.
 */
export function tinyVAEConfigFromTensors(halves: Partial<Record<TinyPart, TensorsByKey>>): Record<string, unknown> {
  const dec = halves.decoder && decoderConfig(halves.decoder);
  const enc = halves.encoder && encoderConfig(halves.encoder);
  if (!dec && !enc) throw new Error('taesd: neither an encoder nor a decoder to read a config from');
  const mirror = <T>(v: T[]): T[] => [...v].reverse();
  return {
    _class_name: 'AutoencoderTiny',
    in_channels: enc?.in_channels ?? 3,
    out_channels: dec?.out_channels ?? 3,
    latent_channels: dec?.latent_channels ?? enc!.latent_channels,
    encoder_block_out_channels: enc?.encoder_block_out_channels ?? mirror(dec!.decoder_block_out_channels as number[]),
    num_encoder_blocks: enc?.num_encoder_blocks ?? mirror(dec!.num_decoder_blocks as number[]),
    decoder_block_out_channels: dec?.decoder_block_out_channels ?? mirror(enc!.encoder_block_out_channels as number[]),
    num_decoder_blocks: dec?.num_decoder_blocks ?? mirror(enc!.num_encoder_blocks as number[]),
  };
}
