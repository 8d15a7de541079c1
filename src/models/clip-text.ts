/**
 * transformers' CLIPTextModel (SD 1.x / 2.x text encoder, SDXL's first) and
 * CLIPTextModelWithProjection (SDXL's second, OpenCLIP bigG) from `config.json`: token +
 * position embeddings, pre-LN transformer layers with causal self-attention, final LayerNorm,
 * and for the latter `text_projection` of the pooled (end-of-text) token. Weight keys are
 * transformers' (`text_model.encoder.layers.N.self_attn.q_proj`, `text_projection`, …).
 */
import { GraphBuilder, type GraphOptions, type Value } from '../graph/builder.js';
import { WeightRecorder, type WeightFiles, type WeightSource } from '../graph/weights.js';
import { openComponent } from './model-source.js';
import type { Feed, RuntimeOptions } from '../runtime/session.js';
import type { IntTensor, Tensor } from '../tensor.js';
import { resolveRuntime } from '../runtime/provider.js';
import { ComponentRuntime } from './component.js';
import { layerNorm, linear } from './layers.js';
import { applyLoras, type LoraHost } from '../lora/apply.js';
import type { LoraComponent } from '../lora/file.js';
import { openLoras, type LoraPatches, type LoraSpec } from '../lora/merge.js';
import { textEncoderLoraTargets, type LoraTargets } from '../lora/names.js';
import { UserError } from '../errors.js';

export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  maxPositions: number;
  act: 'quick_gelu' | 'gelu';
  eps: number;
  /** CLIPTextModelWithProjection: width of `text_projection`'s output; null for CLIPTextModel. */
  projectionDim: number | null;
}

/** What SDXL takes from a text encoder. */
export interface ClipTextHiddenStates {
  /** transformers' `hidden_states[-1 - clipSkip]` [B, L, D]: not final-layer-normed (clipSkip 1 = the penultimate layer). */
  hiddenStates: Tensor;
  /** CLIPTextModelWithProjection only: `text_projection(final_layer_norm(h)[eos])` [B, projection_dim]. */
  textEmbeds?: Tensor;
}

const ACTS = ['quick_gelu', 'gelu'] as const;

export function parseClipTextConfig(c: Record<string, unknown>): ClipTextConfig {
  const act = (c.hidden_act as string | undefined) ?? 'quick_gelu';
  if (!(ACTS as readonly string[]).includes(act)) throw new Error(`text_encoder config: hidden_act "${act}" is not supported; use ${ACTS.join(' or ')}`);
  const num = (k: string, d: number): number => {
    const v = c[k] ?? d;
    if (!Number.isInteger(v) || (v as number) <= 0) throw new Error(`text_encoder config: ${k} must be a positive integer; got ${JSON.stringify(v)}`);
    return v as number;
  };
  return {
    vocabSize: num('vocab_size', 49408),
    hiddenSize: num('hidden_size', 512),
    intermediateSize: num('intermediate_size', 2048),
    layers: num('num_hidden_layers', 12),
    heads: num('num_attention_heads', 8),
    maxPositions: num('max_position_embeddings', 77),
    act: act as ClipTextConfig['act'],
    eps: (c.layer_norm_eps as number | undefined) ?? 1e-5,
    projectionDim: (c.architectures as string[] | undefined)?.[0] === 'CLIPTextModelWithProjection' ? num('projection_dim', 512) : null,
  };
}

function causalMask(n: number, fp16: boolean): Float32Array {
  const m = new Float32Array(n * n);
  // The most negative value of the compute type, as transformers uses: exp() of it is exactly 0.
  const min = fp16 ? -65504 : -3.4028234663852886e38;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) m[i * n + j] = min;
  return m;
}

function selfAttention(g: GraphBuilder, key: string, x: Value, cfg: ClipTextConfig, mask: Value): Value {
  const [b, n, d] = x.shape as [number, number, number];
  const hd = d / cfg.heads;
  const heads = (v: Value): Value => g.transpose(g.reshape(v, [b, n, cfg.heads, hd]), [0, 2, 1, 3]);
  const q = heads(g.mul(linear(g, `${key}.q_proj`, x, d), hd ** -0.5));
  const k = heads(linear(g, `${key}.k_proj`, x, d));
  const v = heads(linear(g, `${key}.v_proj`, x, d));
  const probs = g.softmax(g.add(g.matmul(q, g.transpose(k, [0, 1, 3, 2])), mask));
  const ctx = g.reshape(g.transpose(g.matmul(probs, v), [0, 2, 1, 3]), [b, n, d]);
  return linear(g, `${key}.out_proj`, ctx, d);
}

function mlp(g: GraphBuilder, key: string, x: Value, cfg: ClipTextConfig): Value {
  const h = linear(g, `${key}.fc1`, x, cfg.intermediateSize);
  const act = cfg.act === 'gelu' ? g.gelu(h) : g.mul(h, g.sigmoid(g.mul(h, 1.702)));
  return linear(g, `${key}.fc2`, act, cfg.hiddenSize);
}

/** Which outputs a text-encoder graph computes. */
export interface ClipTextOutputs {
  /**
   * 'last': `last_hidden_state` [B, L, D] after the final LayerNorm, `clipSkip` as in
   * AUTOMATIC1111 and stable-diffusion.cpp: 1 uses the last layer, 2 the one before it, … (the
   * final LayerNorm is applied either way; diffusers' `clip_skip` is this value minus one).
   * 'penultimate' (SDXL): `hidden_states` [B, L, D] `clipSkip` layers before the end, without
   * the final LayerNorm, and `text_embeds` [B, P] (input `eos_mask` [B, L], one-hot at the
   * end-of-text token) for a CLIPTextModelWithProjection.
   */
  kind: 'last' | 'penultimate';
  clipSkip: number;
}

/** input_ids [B, L] (int64) → the outputs `out` asks for. */
export function buildClipTextGraph(
  cfg: ClipTextConfig,
  weights: WeightSource | undefined,
  shape: { batch: number; length: number },
  out: ClipTextOutputs = { kind: 'last', clipSkip: 1 },
  opts: GraphOptions = {},
): GraphBuilder {
  const { clipSkip } = out;
  const maxSkip = out.kind === 'last' ? cfg.layers : cfg.layers - 1;
  if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > maxSkip) {
    throw new UserError(`clip skip must be an integer from 1 to ${maxSkip}; got ${clipSkip}`);
  }
  if (shape.length > cfg.maxPositions) throw new Error(`text_encoder: ${shape.length} tokens exceed max_position_embeddings ${cfg.maxPositions}`);
  const g = new GraphBuilder('text_encoder', weights, undefined, opts);
  const d = cfg.hiddenSize;
  const ids = g.input('input_ids', [shape.batch, shape.length], 'int64');
  const tokens = g.embedding(g.weight('text_model.embeddings.token_embedding.weight', [cfg.vocabSize, d]), ids);
  const positions = g.slice(g.weight('text_model.embeddings.position_embedding.weight', [cfg.maxPositions, d]), 0, 0, shape.length);
  let x = g.add(tokens, positions);
  const mask = g.constant(causalMask(shape.length, g.computeType === 'float16'), [shape.length, shape.length]);
  const pooled = out.kind === 'penultimate' && cfg.projectionDim !== null;
  // The pooled output needs every layer; hidden states stop where clip skip says.
  const layers = out.kind === 'last' ? cfg.layers - (clipSkip - 1) : pooled ? cfg.layers : cfg.layers - clipSkip;
  for (let i = 0; i < layers; i++) {
    if (out.kind === 'penultimate' && i === cfg.layers - clipSkip) g.output(x, 'hidden_states');
    const key = `text_model.encoder.layers.${i}`;
    const input = x;
    x = g.scoped(key, () => {
      const h = g.add(input, selfAttention(g, `${key}.self_attn`, layerNorm(g, `${key}.layer_norm1`, input, cfg.eps), cfg, mask));
      return g.add(h, mlp(g, `${key}.mlp`, layerNorm(g, `${key}.layer_norm2`, h, cfg.eps), cfg));
    });
  }
  if (out.kind === 'penultimate' && layers === cfg.layers - clipSkip) g.output(x, 'hidden_states');
  if (out.kind === 'last') {
    g.output(layerNorm(g, 'text_model.final_layer_norm', x, cfg.eps), 'last_hidden_state');
  } else if (pooled) {
    // One-hot rows pick each sequence's end-of-text token exactly: [B, 1, L] × [B, L, D].
    const eos = g.reshape(g.toCompute(g.input('eos_mask', [shape.batch, shape.length])), [shape.batch, 1, shape.length]);
    const normed = layerNorm(g, 'text_model.final_layer_norm', x, cfg.eps);
    const pooledOut = g.reshape(g.matmul(eos, normed), [shape.batch, d]);
    g.output(linear(g, 'text_projection', pooledOut, cfg.projectionDim!, false), 'text_embeds');
  }
  return g;
}

export class ClipTextEncoder implements LoraHost {
  private targets?: LoraTargets;

  private constructor(
    readonly config: ClipTextConfig,
    private readonly weights: WeightFiles,
    private readonly rt: ComponentRuntime,
    /** Which of a model's text encoders this is, for the LoRA module names meant for it. */
    readonly loraComponent: LoraComponent,
  ) {}

  /** `component`: the folder name in a model folder, `text_encoder` (default) or SDXL's `text_encoder_2`. */
  static async load(dir: string, opts: TextEncoderLoadOptions = {}): Promise<ClipTextEncoder> {
    const name = opts.component ?? 'text_encoder';
    const comp = openComponent(dir, name, ['CLIPTextModel', 'CLIPTextModelWithProjection']);
    const cfg = parseClipTextConfig(comp.config);
    const weights = comp.weights;
    buildClipTextGraph(cfg, weights, { batch: 1, length: 1 }, probeOutputs(cfg));
    const loraComponent: LoraComponent = name === 'text_encoder_2' ? 'text_encoder_2' : 'text_encoder';
    const te = new ClipTextEncoder(cfg, weights, new ComponentRuntime(name, weights, comp.config, await resolveRuntime(opts)), loraComponent);
    if (opts.loras?.length) applyLoras(openLoras(opts.loras), [te], { strict: false, onWarning: opts.onWarning });
    return te;
  }

  /** The weights a LoRA may change, by every name LoRA files use for them. */
  loraTargets(): LoraTargets {
    if (!this.targets) {
      const recorder = new WeightRecorder();
      buildClipTextGraph(this.config, recorder, { batch: 1, length: 1 }, probeOutputs(this.config));
      this.targets = textEncoderLoraTargets(recorder.shapes);
    }
    return this.targets;
  }

  setLoraPatches(patches: LoraPatches): void {
    this.weights.setPatches(patches);
  }

  /** input_ids [B, L] (Int32Array or BigInt64Array) → last hidden state [B, L, D]. */
  async forward(inputIds: IntTensor, opts: { clipSkip?: number } = {}): Promise<Tensor> {
    const out = await this.run(inputIds, { kind: 'last', clipSkip: opts.clipSkip ?? 1 });
    return out.last_hidden_state!;
  }

  /**
   * SDXL's use: the hidden states `clipSkip` layers before the end (1, the default, is
   * transformers' `hidden_states[-2]`), not final-layer-normed, and for a
   * CLIPTextModelWithProjection the projected pooled output `text_embeds`.
   */
  async forwardHiddenStates(inputIds: IntTensor, opts: { clipSkip?: number } = {}): Promise<ClipTextHiddenStates> {
    const out = await this.run(inputIds, { kind: 'penultimate', clipSkip: opts.clipSkip ?? 1 });
    return { hiddenStates: out.hidden_states!, ...(out.text_embeds ? { textEmbeds: out.text_embeds } : {}) };
  }

  private async run(inputIds: IntTensor, outputs: ClipTextOutputs): Promise<Record<string, Tensor>> {
    const dims = inputIds?.dims;
    if (!Array.isArray(dims) || dims.length !== 2 || !(inputIds.data instanceof Int32Array || inputIds.data instanceof BigInt64Array) || inputIds.data.length !== dims[0]! * dims[1]!) {
      throw new Error(`text_encoder: input_ids must be an Int32Array or BigInt64Array with dims [batch, tokens]; got dims ${JSON.stringify(dims)}`);
    }
    const ids = inputIds.data instanceof BigInt64Array ? inputIds.data : BigInt64Array.from(inputIds.data, (v) => BigInt(v));
    for (const id of ids) {
      if (id < 0n || id >= BigInt(this.config.vocabSize)) throw new Error(`text_encoder: token id ${id} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
    }
    const shape = { batch: dims[0]!, length: dims[1]! };
    const feeds: Feed[] = [{ name: 'input_ids', type: 'int64', data: ids, dims }];
    if (outputs.kind === 'penultimate' && this.config.projectionDim !== null) {
      feeds.push({ name: 'eos_mask', type: 'float32', value: eosMask(ids, shape.batch, shape.length) });
    }
    const out = await this.rt.run({ shape, ...outputs }, () => buildClipTextGraph(this.config, this.weights, shape, outputs, this.rt.graph).build(), feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { data: t.data as Float32Array, dims: [...t.dims] }]));
  }

  /** Closes the encoder's session (its weights leave memory); a later forward opens it again. */
  dispose(): Promise<void> {
    return this.rt.dispose();
  }
}

/**
 * transformers' pooling rule for CLIP configs with the legacy `eos_token_id` 2 (all SD/SDXL
 * ones): the end-of-text token is the first position of the largest id in each row.
 */
function eosMask(ids: BigInt64Array, batch: number, length: number): Tensor {
  const mask = new Float32Array(batch * length);
  for (let b = 0; b < batch; b++) {
    let best = 0;
    for (let i = 1; i < length; i++) if (ids[b * length + i]! > ids[b * length + best]!) best = i;
    mask[b * length + best] = 1;
  }
  return { data: mask, dims: [batch, length] };
}

export interface TextEncoderLoadOptions extends RuntimeOptions {
  /** `text_encoder` (default) or `text_encoder_2` (SDXL). */
  component?: string;
  /** LoRAs merged into the weights (their `lora_te_…` / `lora_te1_…` modules, `lora_te2_…` for text_encoder_2). */
  loras?: LoraSpec[];
}

/** The outputs whose graph uses every weight: built at load time to check them, and to list LoRA targets. */
function probeOutputs(cfg: ClipTextConfig): ClipTextOutputs {
  return { kind: cfg.projectionDim === null ? 'last' : 'penultimate', clipSkip: 1 };
}

export function loadTextEncoder(dir: string, opts: TextEncoderLoadOptions = {}): Promise<ClipTextEncoder> {
  return ClipTextEncoder.load(dir, opts);
}
