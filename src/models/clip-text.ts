/**
 * transformers' CLIPTextModel (SD 1.x / 2.x text encoder) from `text_encoder/config.json`:
 * token + position embeddings, pre-LN transformer layers with causal self-attention, final
 * LayerNorm. Weight keys are transformers' (`text_model.encoder.layers.N.self_attn.q_proj`, …).
 */
import { GraphBuilder, type Value } from '../graph/builder.js';
import { WeightStore, type WeightSource } from '../graph/weights.js';
import { findComponent } from '../io/model-folder.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { IntTensor, Tensor } from '../tensor.js';
import { ComponentRuntime } from './component.js';
import { layerNorm, linear } from './layers.js';

export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  maxPositions: number;
  act: 'quick_gelu' | 'gelu';
  eps: number;
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
  };
}

function causalMask(n: number): Float32Array {
  const m = new Float32Array(n * n);
  // The most negative float32, as transformers uses: exp() of it is exactly 0.
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) m[i * n + j] = -3.4028234663852886e38;
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

/**
 * input_ids [B, L] (int64) → hidden states [B, L, D] after the final LayerNorm. `clipSkip` as in
 * AUTOMATIC1111 and stable-diffusion.cpp: 1 uses the last layer, 2 the one before it, … (the
 * final LayerNorm is applied either way; diffusers' `clip_skip` is this value minus one).
 */
export function buildClipTextGraph(cfg: ClipTextConfig, weights: WeightSource | undefined, shape: { batch: number; length: number }, clipSkip = 1): GraphBuilder {
  if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > cfg.layers) {
    throw new Error(`clip skip must be an integer from 1 to ${cfg.layers}; got ${clipSkip}`);
  }
  if (shape.length > cfg.maxPositions) throw new Error(`text_encoder: ${shape.length} tokens exceed max_position_embeddings ${cfg.maxPositions}`);
  const g = new GraphBuilder('text_encoder', weights);
  const d = cfg.hiddenSize;
  const ids = g.input('input_ids', [shape.batch, shape.length], 'int64');
  const tokens = g.embedding(g.weight('text_model.embeddings.token_embedding.weight', [cfg.vocabSize, d]), ids);
  const positions = g.slice(g.weight('text_model.embeddings.position_embedding.weight', [cfg.maxPositions, d]), 0, 0, shape.length);
  let x = g.add(tokens, positions);
  const mask = g.constant(causalMask(shape.length), [shape.length, shape.length]);
  for (let i = 0; i < cfg.layers - (clipSkip - 1); i++) {
    const key = `text_model.encoder.layers.${i}`;
    g.scope = key;
    x = g.add(x, selfAttention(g, `${key}.self_attn`, layerNorm(g, `${key}.layer_norm1`, x, cfg.eps), cfg, mask));
    x = g.add(x, mlp(g, `${key}.mlp`, layerNorm(g, `${key}.layer_norm2`, x, cfg.eps), cfg));
  }
  g.scope = '';
  g.output(layerNorm(g, 'text_model.final_layer_norm', x, cfg.eps), 'last_hidden_state');
  return g;
}

export class ClipTextEncoder {
  private constructor(
    readonly config: ClipTextConfig,
    private readonly weights: WeightStore,
    private readonly rt: ComponentRuntime,
  ) {}

  static async load(dir: string, opts: RuntimeOptions = {}): Promise<ClipTextEncoder> {
    const comp = findComponent(dir, 'text_encoder', { classNames: ['CLIPTextModel', 'CLIPTextModelWithProjection'] });
    const cfg = parseClipTextConfig(comp.config);
    const weights = WeightStore.open(comp.weightFiles, 'text_encoder');
    buildClipTextGraph(cfg, weights, { batch: 1, length: 1 });
    return new ClipTextEncoder(cfg, weights, new ComponentRuntime('text_encoder', weights, comp.config, opts));
  }

  /** input_ids [B, L] (Int32Array or BigInt64Array) → last hidden state [B, L, D]. */
  async forward(inputIds: IntTensor, opts: { clipSkip?: number } = {}): Promise<Tensor> {
    const dims = inputIds?.dims;
    if (!Array.isArray(dims) || dims.length !== 2 || !(inputIds.data instanceof Int32Array || inputIds.data instanceof BigInt64Array) || inputIds.data.length !== dims[0]! * dims[1]!) {
      throw new Error(`text_encoder: input_ids must be an Int32Array or BigInt64Array with dims [batch, tokens]; got dims ${JSON.stringify(dims)}`);
    }
    const ids = inputIds.data instanceof BigInt64Array ? inputIds.data : BigInt64Array.from(inputIds.data, (v) => BigInt(v));
    for (const id of ids) {
      if (id < 0n || id >= BigInt(this.config.vocabSize)) throw new Error(`text_encoder: token id ${id} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
    }
    const shape = { batch: dims[0]!, length: dims[1]! };
    const clipSkip = opts.clipSkip ?? 1;
    const out = await this.rt.run({ shape, clipSkip }, () => buildClipTextGraph(this.config, this.weights, shape, clipSkip).build(), [
      { name: 'input_ids', type: 'int64', data: ids, dims },
    ]);
    const t = out.last_hidden_state!;
    return { data: t.data as Float32Array, dims: [...t.dims] };
  }

  dispose(): Promise<void> {
    return this.rt.dispose();
  }
}

export function loadTextEncoder(dir: string, opts: RuntimeOptions = {}): Promise<ClipTextEncoder> {
  return ClipTextEncoder.load(dir, opts);
}
