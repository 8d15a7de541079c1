/**
 * Text encoders as single files hold them, mapped to transformers' CLIPTextModel names:
 * - OpenAI CLIP through transformers (`…transformer.text_model.*`, SD 1.x and SDXL's first
 *   encoder): the names are transformers' already, behind a prefix.
 * - OpenCLIP (`…model.*`, SD 2.x and SDXL's second encoder): `resblocks`, `ln_1`/`ln_2`,
 *   `c_fc`/`c_proj`, and one fused `in_proj_weight` [3W, W] whose row blocks are q, k and v;
 *   `text_projection` is stored [W, E] (used as x @ P), the transpose of transformers' Linear.
 * Neither says its head count: CLIP's text towers use 64 channels per head.
 */
import type { CheckpointSlot } from './weights.js';
import type { TensorsByKey } from './ldm-unet.js';

/** 64 channels per head, as every CLIP / OpenCLIP text tower; one head for widths that are no multiple of 64. */
export function clipHeads(width: number): number {
  return width % 64 === 0 ? width / 64 : 1;
}

function shapeOf(tensors: TensorsByKey, key: string, what: string): number[] {
  const t = tensors.get(key);
  if (!t) throw new Error(`${what}: tensor "${key}" is missing from the checkpoint; the text encoder is incomplete`);
  return t.shape;
}

function layerCount(tensors: TensorsByKey, re: RegExp): number {
  const seen = new Set<string>();
  for (const k of tensors.keys()) {
    const m = re.exec(k);
    if (m) seen.add(m[1]!);
  }
  return seen.size;
}

/** OpenAI CLIP as transformers names it (prefix removed): the keys are the diffusers keys. */
export function clipSlots(tensors: TensorsByKey, prefix: string): Map<string, CheckpointSlot> {
  const slots = new Map<string, CheckpointSlot>();
  for (const k of tensors.keys()) {
    // transformers before 4.x had no `text_model.` level.
    const name = k.startsWith('text_model.') ? k : `text_model.${k}`;
    slots.set(name, { key: prefix + k });
  }
  return slots;
}

export function clipConfig(tensors: TensorsByKey, what: string, act: 'quick_gelu' | 'gelu'): Record<string, unknown> {
  const base = tensors.has('text_model.embeddings.token_embedding.weight') ? 'text_model.' : '';
  const [vocab, width] = shapeOf(tensors, `${base}embeddings.token_embedding.weight`, what) as [number, number];
  return {
    architectures: ['CLIPTextModel'],
    hidden_act: act,
    hidden_size: width,
    intermediate_size: shapeOf(tensors, `${base}encoder.layers.0.mlp.fc1.weight`, what)[0],
    num_attention_heads: clipHeads(width),
    num_hidden_layers: layerCount(tensors, /encoder\.layers\.(\d+)\./),
    max_position_embeddings: shapeOf(tensors, `${base}embeddings.position_embedding.weight`, what)[0],
    vocab_size: vocab,
    layer_norm_eps: 1e-5,
  };
}

const OPEN_CLIP_LAYER: [string, string][] = [
  ['ln_1.', 'layer_norm1.'],
  ['ln_2.', 'layer_norm2.'],
  ['mlp.c_fc.', 'mlp.fc1.'],
  ['mlp.c_proj.', 'mlp.fc2.'],
  ['attn.out_proj.', 'self_attn.out_proj.'],
];

/** OpenCLIP's text tower (prefix removed) → CLIPTextModel(WithProjection) names. */
export function openClipSlots(tensors: TensorsByKey, prefix: string): Map<string, CheckpointSlot> {
  const slots = new Map<string, CheckpointSlot>();
  const put = (name: string, key: string, extra: Partial<CheckpointSlot> = {}): void => void slots.set(name, { key: prefix + key, ...extra });
  for (const k of tensors.keys()) {
    if (k === 'token_embedding.weight') put('text_model.embeddings.token_embedding.weight', k);
    else if (k === 'positional_embedding') put('text_model.embeddings.position_embedding.weight', k);
    else if (k.startsWith('ln_final.')) put(`text_model.final_layer_norm.${k.slice('ln_final.'.length)}`, k);
    else if (k === 'text_projection') put('text_projection.weight', k, { transposed: true });
    const m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(k);
    if (!m) continue;
    const layer = `text_model.encoder.layers.${m[1]}`;
    const rest = m[2]!;
    const fused = /^attn\.in_proj_(weight|bias)$/.exec(rest);
    if (fused) {
      const width = tensors.get(k)!.shape[0]! / 3;
      ['q', 'k', 'v'].forEach((p, i) => put(`${layer}.self_attn.${p}_proj.${fused[1]}`, k, { rows: { start: i * width, count: width } }));
      continue;
    }
    const renamed = OPEN_CLIP_LAYER.find(([from]) => rest.startsWith(from));
    if (renamed) put(`${layer}.${renamed[1]}${rest.slice(renamed[0].length)}`, k);
  }
  return slots;
}

/**
 * The inverse (writing checkpoints): a CLIPTextModel key → its OpenCLIP name; q/k/v name a third
 * (`part`) of the fused in_proj, and text_projection is stored transposed.
 */
export function originalOpenClipKey(key: string): { key: string; part?: number; transposed?: boolean } {
  if (key === 'text_model.embeddings.token_embedding.weight') return { key: 'token_embedding.weight' };
  if (key === 'text_model.embeddings.position_embedding.weight') return { key: 'positional_embedding' };
  if (key === 'text_projection.weight') return { key: 'text_projection', transposed: true };
  if (key.startsWith('text_model.final_layer_norm.')) return { key: `ln_final.${key.slice('text_model.final_layer_norm.'.length)}` };
  const m = /^text_model\.encoder\.layers\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const block = `transformer.resblocks.${m[1]}`;
    const qkv = /^self_attn\.([qkv])_proj\.(weight|bias)$/.exec(m[2]!);
    if (qkv) return { key: `${block}.attn.in_proj_${qkv[2]}`, part: 'qkv'.indexOf(qkv[1]!) };
    const renamed = OPEN_CLIP_LAYER.find(([, to]) => m[2]!.startsWith(to));
    if (renamed) return { key: `${block}.${renamed[0]}${m[2]!.slice(renamed[1].length)}` };
  }
  throw new Error(`text_encoder: no OpenCLIP name for "${key}"`);
}

/**
 * `layers`: how many resblocks the encoder runs. SD 2.x conditions on the penultimate layer's
 * output through ln_final, which is a CLIPTextModel one layer shorter (as diffusers converts it).
 */
export function openClipConfig(tensors: TensorsByKey, what: string, layers: 'all' | 'penultimate'): Record<string, unknown> {
  const [vocab, width] = shapeOf(tensors, 'token_embedding.weight', what) as [number, number];
  const blocks = layerCount(tensors, /^transformer\.resblocks\.(\d+)\./);
  const projection = tensors.get('text_projection');
  return {
    architectures: [projection && layers === 'all' ? 'CLIPTextModelWithProjection' : 'CLIPTextModel'],
    hidden_act: 'gelu',
    hidden_size: width,
    intermediate_size: shapeOf(tensors, 'transformer.resblocks.0.mlp.c_fc.weight', what)[0],
    num_attention_heads: clipHeads(width),
    num_hidden_layers: layers === 'penultimate' ? blocks - 1 : blocks,
    max_position_embeddings: shapeOf(tensors, 'positional_embedding', what)[0],
    vocab_size: vocab,
    layer_norm_eps: 1e-5,
    ...(projection ? { projection_dim: projection.shape[1] } : {}),
  };
}
