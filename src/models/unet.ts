/**
 * diffusers' UNet2DConditionModel (SD 1.x / 2.x / XL), built from `unet/config.json` with the
 * weight keys diffusers uses: conv_in, time_embedding, add_embedding (SDXL), down_blocks,
 * mid_block, up_blocks, conv_norm_out, conv_out.
 */
import { GraphBuilder, type AttentionCall, type FlopCount, type GraphDef, type GraphOptions, type Value } from '../graph/builder.js';
import { denseAttention } from '../attention/dense.js';
import type { AttentionVariant } from '../attention/variant.js';
import { WeightRecorder, type WeightSource } from '../graph/weights.js';
import { openComponent } from './model-source.js';
import { ort, type Feed, type RuntimeOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import { resolveAttention, type AttentionOptions, type ResolvedAttention } from '../attention/options.js';
import { resolveRuntime } from '../runtime/provider.js';
import { AttentionComponent, ComponentRuntime, checkInput, PlanCache } from './component.js';
import { conv2d, groupNorm, linear } from './layers.js';
import { downsample2D, resnetBlock2D, upsample2D } from './resnet.js';
import { transformer2D } from './transformer.js';
import { applyLoras, type LoraHost } from '../lora/apply.js';
import { openLoras, type LoraPatches, type LoraSpec } from '../lora/merge.js';
import { unetLoraTargets, type LoraTargets } from '../lora/names.js';
import { cacheEntry, checkCachePoint, DEEP_FEATURE, entryChannels, inShallowDown, type CacheGraph, type CachePoint } from './unet-cache.js';

const DOWN_BLOCKS = ['CrossAttnDownBlock2D', 'DownBlock2D'] as const;
const UP_BLOCKS = ['CrossAttnUpBlock2D', 'UpBlock2D'] as const;
const MID_BLOCKS = ['UNetMidBlock2DCrossAttn'] as const;

/** What a U-Net's time embedding, down blocks and mid block need: the U-Net and the ControlNet share it. */
export interface UNetEncoderConfig {
  inChannels: number;
  blockOutChannels: number[];
  downBlockTypes: string[];
  /** UNetMidBlock2DCrossAttn, UNetMidBlock2D (one resnet: some ControlNets) or none. */
  midBlockType: string | null;
  layersPerBlock: number;
  /** Heads per down block (diffusers' `num_attention_heads ?? attention_head_dim`). */
  heads: number[];
  transformerLayers: number[];
  crossAttentionDim: number;
  useLinearProjection: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  groups: number;
  eps: number;
  downsamplePadding: number;
  midBlockScaleFactor: number;
  /** SDXL's `addition_embed_type: "text_time"`: pooled text + size/crop conditioning; null otherwise. */
  textTime: TextTimeConfig | null;
  /**
   * `time_cond_proj_dim` of guidance-distilled U-Nets (LCM): the width of the extra `timestep_cond`
   * input (the guidance scale's embedding), added to the timestep's through `time_embedding.cond_proj`.
   */
  timeCondProjDim: number | null;
}

export interface UNetConfig extends UNetEncoderConfig {
  outChannels: number;
  upBlockTypes: string[];
  reverseTransformerLayers: number[];
  centerInputSample: boolean;
}

export interface TextTimeConfig {
  /** Width of each time id's sinusoidal embedding (`addition_time_embed_dim`). */
  timeEmbedDim: number;
  /** Width of the pooled text embedding: `projection_class_embeddings_input_dim` − 6 · timeEmbedDim. */
  textEmbedDim: number;
}

/** SDXL's six time ids: original size, crop top-left, target size (height first). */
export const TIME_IDS = 6;

/** Plans (graph definitions) a U-Net keeps: DeepCache's two graphs at two batch sizes (NGMS). */
const PLANS_KEPT = 4;

function perBlock(v: unknown, n: number, field: string, what: string): number[] {
  const list = Array.isArray(v) ? v : Array(n).fill(v);
  if (list.length !== n || !list.every((x) => Number.isInteger(x) && x > 0)) {
    throw new Error(`${what} config: ${field} must be a positive integer or a list of ${n}; got ${JSON.stringify(v)}`);
  }
  return list as number[];
}

/** Throws unless each of `keys` is absent or has its supported value. */
export function refuseUnsupported(c: Record<string, unknown>, what: string, keys: readonly [string, unknown][]): void {
  for (const [k, ok] of keys) {
    const v = c[k] ?? ok;
    if (JSON.stringify(v) !== JSON.stringify(ok)) {
      throw new Error(`${what} config: ${k} = ${JSON.stringify(v)} is not supported; todo-sd runs SD 1.x / 2.x / XL models`);
    }
  }
}

/** The config fields the U-Net and the ControlNet share (their `__init__` arguments of the same name); `what` names the component in errors. */
export function parseEncoderConfig(c: Record<string, unknown>, what: string, midBlocks: readonly string[]): UNetEncoderConfig {
  refuseUnsupported(c, what, [
    ['class_embed_type', null],
    ['encoder_hid_dim_type', null],
    ['only_cross_attention', false],
  ]);
  const blockOut = c.block_out_channels as number[] | undefined;
  if (!Array.isArray(blockOut) || blockOut.length === 0) throw new Error(`${what} config: block_out_channels is missing`);
  const n = blockOut.length;
  const down = (c.down_block_types as string[] | undefined) ?? [];
  checkBlockTypes(down, DOWN_BLOCKS, 'down_block_types', n, what);
  const mid = c.mid_block_type === undefined ? 'UNetMidBlock2DCrossAttn' : (c.mid_block_type as string | null);
  if (mid !== null && !midBlocks.includes(mid)) {
    throw new Error(`${what} config: unknown mid_block_type "${mid}"; supported: ${midBlocks.join(', ')}`);
  }
  if ((c.resnet_time_scale_shift ?? 'default') !== 'default') throw new Error(`${what} config: resnet_time_scale_shift "${String(c.resnet_time_scale_shift)}" is not supported`);
  if ((c.conv_in_kernel ?? 3) !== 3) throw new Error(`${what} config: only 3x3 conv_in kernels are supported`);
  const layersPerBlock = c.layers_per_block ?? 2;
  if (!Number.isInteger(layersPerBlock)) throw new Error(`${what} config: layers_per_block must be an integer (per-block lists are not supported)`);
  const additionType = c.addition_embed_type ?? null;
  if (additionType !== null && additionType !== 'text_time') {
    throw new Error(`${what} config: addition_embed_type = ${JSON.stringify(additionType)} is not supported; only "text_time" (SDXL) is`);
  }
  const condDim = c.time_cond_proj_dim ?? null;
  if (condDim !== null && !(Number.isInteger(condDim) && (condDim as number) > 0)) throw new Error(`${what} config: time_cond_proj_dim must be a positive integer; got ${JSON.stringify(condDim)}`);
  const crossDim = c.cross_attention_dim ?? 1280;
  if (!Number.isInteger(crossDim)) throw new Error(`${what} config: cross_attention_dim must be an integer`);
  return {
    inChannels: (c.in_channels as number) ?? 4,
    blockOutChannels: blockOut,
    downBlockTypes: down,
    midBlockType: mid,
    layersPerBlock: layersPerBlock as number,
    // diffusers' naming quirk: SD's `attention_head_dim` is in fact the number of heads.
    heads: perBlock(c.num_attention_heads ?? c.attention_head_dim ?? 8, n, 'attention_head_dim / num_attention_heads', what),
    transformerLayers: perBlock(c.transformer_layers_per_block ?? 1, n, 'transformer_layers_per_block', what),
    crossAttentionDim: crossDim as number,
    useLinearProjection: Boolean(c.use_linear_projection),
    flipSinToCos: (c.flip_sin_to_cos as boolean | undefined) ?? true,
    freqShift: (c.freq_shift as number | undefined) ?? 0,
    groups: (c.norm_num_groups as number | undefined) ?? 32,
    eps: (c.norm_eps as number | undefined) ?? 1e-5,
    downsamplePadding: (c.downsample_padding as number | undefined) ?? 1,
    midBlockScaleFactor: (c.mid_block_scale_factor as number | undefined) ?? 1,
    textTime: additionType === 'text_time' ? parseTextTime(c, what) : null,
    timeCondProjDim: condDim as number | null,
  };
}

function checkBlockTypes(list: readonly string[], known: readonly string[], field: string, n: number, what: string): void {
  if (list.length !== n) throw new Error(`${what} config: ${field} has ${list.length} entries for ${n} block_out_channels`);
  for (const t of list) {
    if (!known.includes(t)) throw new Error(`${what} config: unknown block type "${t}" in ${field}; supported: ${known.join(', ')}`);
  }
}

/** Reads and checks a diffusers UNet2DConditionModel config. */
export function parseUNetConfig(c: Record<string, unknown>): UNetConfig {
  refuseUnsupported(c, 'unet', [['dual_cross_attention', false]]);
  const enc = parseEncoderConfig(c, 'unet', MID_BLOCKS);
  const n = enc.blockOutChannels.length;
  const up = (c.up_block_types as string[] | undefined) ?? [];
  checkBlockTypes(up, UP_BLOCKS, 'up_block_types', n, 'unet');
  if ((c.conv_out_kernel ?? 3) !== 3) throw new Error('unet config: only 3x3 conv_out kernels are supported');
  const reverse = c.reverse_transformer_layers_per_block
    ? perBlock(c.reverse_transformer_layers_per_block, n, 'reverse_transformer_layers_per_block', 'unet')
    : [...enc.transformerLayers].reverse();
  return {
    ...enc,
    outChannels: (c.out_channels as number) ?? 4,
    upBlockTypes: up,
    reverseTransformerLayers: reverse,
    centerInputSample: Boolean(c.center_input_sample),
  };
}

function parseTextTime(c: Record<string, unknown>, what: string): TextTimeConfig {
  const timeEmbedDim = c.addition_time_embed_dim;
  const input = c.projection_class_embeddings_input_dim;
  if (!Number.isInteger(timeEmbedDim) || (timeEmbedDim as number) <= 0 || !Number.isInteger(input)) {
    throw new Error(`${what} config: addition_embed_type "text_time" needs integer addition_time_embed_dim and projection_class_embeddings_input_dim`);
  }
  const textEmbedDim = (input as number) - TIME_IDS * (timeEmbedDim as number);
  if (textEmbedDim <= 0) {
    throw new Error(`${what} config: projection_class_embeddings_input_dim ${String(input)} leaves no room for the pooled text embedding after ${TIME_IDS} time ids of ${String(timeEmbedDim)}`);
  }
  return { timeEmbedDim: timeEmbedDim as number, textEmbedDim };
}

/**
 * The resolution levels (0 = the latent's own grid) whose blocks have self-attention, in
 * order: ToDo's levels count over these (SDXL has none at level 0).
 */
export function attentionLevels(cfg: UNetConfig): number[] {
  const n = cfg.blockOutChannels.length;
  return Array.from({ length: n }, (_, i) => i).filter(
    (i) =>
      cfg.downBlockTypes[i] === 'CrossAttnDownBlock2D' ||
      cfg.upBlockTypes[n - 1 - i] === 'CrossAttnUpBlock2D' ||
      (i === n - 1 && cfg.midBlockType !== null),
  );
}

/** diffusers' Timesteps frequencies, in float32 step by step as torch computes them. */
export function timestepFrequencies(dim: number, shift: number): Float32Array {
  const half = Math.floor(dim / 2);
  const f = Math.fround;
  const logMax = f(-Math.log(10000));
  return Float32Array.from({ length: half }, (_, i) => f(Math.exp(f(f(logMax * i) / f(half - shift)))));
}

export interface UNetShape {
  batch: number;
  height: number;
  width: number;
  textLength: number;
  /** The graph variant that takes a ControlNet's residuals as inputs. */
  controlResiduals?: boolean;
}

/** diffusers' Timesteps: [B] values → [B, dim] sinusoids (cos half first with flip_sin_to_cos), in fp32 (values up to 999 times frequencies), as diffusers casts after it. */
function sinusoidalEmbedding(g: GraphBuilder, values: Value, dim: number, flipSinToCos: boolean, shift: number): Value {
  const n = values.dim(0);
  const freqs = timestepFrequencies(dim, shift);
  const args = g.mul(g.reshape(values, [n, 1]), g.constant(freqs, [1, freqs.length], 'float32'));
  const sin = g.sin(args);
  const cos = g.cos(args);
  return g.concat(flipSinToCos ? [cos, sin] : [sin, cos], 1);
}

/**
 * Graph inputs timestep [B] (and SDXL's text_embeds [B, P], time_ids [B, 6]; a guidance-distilled
 * U-Net's timestep_cond [B, time_cond_proj_dim]) → the activated time embedding the resnets take:
 * diffusers' time_proj, time_embedding (+ cond_proj) and add_embedding.
 */
export function timeEmbedding(g: GraphBuilder, cfg: UNetEncoderConfig, b: number): Value {
  const t = g.input('timestep', [b]);
  const c0 = cfg.blockOutChannels[0]!;
  let proj = g.toCompute(sinusoidalEmbedding(g, t, c0, cfg.flipSinToCos, cfg.freqShift));
  if (cfg.timeCondProjDim !== null) {
    const cond = g.toCompute(g.input('timestep_cond', [b, cfg.timeCondProjDim]));
    proj = g.add(proj, linear(g, 'time_embedding.cond_proj', cond, c0, false));
  }
  const timeDim = c0 * 4;
  let emb = linear(g, 'time_embedding.linear_2', g.silu(linear(g, 'time_embedding.linear_1', proj, timeDim)), timeDim);
  if (cfg.textTime) {
    // SDXL: pooled text first, then each time id's sinusoid; the sum is activated once, in the resnets.
    const { textEmbedDim, timeEmbedDim } = cfg.textTime;
    const textEmbeds = g.toCompute(g.input('text_embeds', [b, textEmbedDim]));
    const timeIds = g.input('time_ids', [b, TIME_IDS]);
    const timeEmbeds = g.toCompute(g.reshape(sinusoidalEmbedding(g, g.reshape(timeIds, [b * TIME_IDS]), timeEmbedDim, cfg.flipSinToCos, cfg.freqShift), [b, TIME_IDS * timeEmbedDim]));
    const added = g.concat([textEmbeds, timeEmbeds], 1);
    emb = g.add(emb, linear(g, 'add_embedding.linear_2', g.silu(linear(g, 'add_embedding.linear_1', added, timeDim)), timeDim));
  }
  return g.silu(emb);
}

/** A Transformer2DModel at `level` with the block's heads and depth. */
export type TransformerAt = (key: string, x: Value, level: number, heads: number, layers: number) => Value;

/** Transformers over the text, with the attention variant told each block's level among `withAttention` (the levels that have self-attention). */
export function transformerAt(g: GraphBuilder, cfg: UNetEncoderConfig, text: Value, variant: AttentionVariant, latent: readonly [number, number], withAttention: readonly number[]): TransformerAt {
  return (key, y, level, heads, layers) =>
    transformer2D(g, key, y, text, {
      heads,
      layers,
      useLinearProjection: cfg.useLinearProjection,
      groups: cfg.groups,
      attention: variant,
      level,
      attentionLevel: withAttention.indexOf(level),
      latent,
    });
}

/**
 * diffusers' down_blocks from conv_in's output `x`: the samples after each resnet (and
 * attention) and each downsampler, conv_in's output first (down_block_res_samples). With
 * `shallow` (DeepCache's cache point) the path stops there: only the samples above it.
 */
export function downBlocks(g: GraphBuilder, cfg: UNetEncoderConfig, x: Value, temb: Value, tx: TransformerAt, shallow?: CachePoint): Value[] {
  const resOpts = { groups: cfg.groups, eps: cfg.eps };
  const samples: Value[] = [x];
  const n = cfg.blockOutChannels.length;
  cfg.downBlockTypes.forEach((type, i) => {
    const out = cfg.blockOutChannels[i]!;
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      if (shallow && !inShallowDown(shallow, i, j)) return;
      x = resnetBlock2D(g, `down_blocks.${i}.resnets.${j}`, x, temb, out, resOpts);
      if (type === 'CrossAttnDownBlock2D') x = tx(`down_blocks.${i}.attentions.${j}`, x, i, cfg.heads[i]!, cfg.transformerLayers[i]!);
      samples.push(x);
    }
    if (i < n - 1) {
      if (shallow && !inShallowDown(shallow, i, cfg.layersPerBlock)) return;
      x = downsample2D(g, `down_blocks.${i}.downsamplers.0`, x, cfg.downsamplePadding);
      samples.push(x);
    }
  });
  return samples;
}

/** diffusers' mid_block on the last down sample (unchanged without one). */
export function midBlock(g: GraphBuilder, cfg: UNetEncoderConfig, x: Value, temb: Value, tx: TransformerAt): Value {
  if (!cfg.midBlockType) return x;
  const n = cfg.blockOutChannels.length;
  const top = cfg.blockOutChannels[n - 1]!;
  const midOpts = { groups: cfg.groups, eps: cfg.eps, outputScaleFactor: cfg.midBlockScaleFactor };
  x = resnetBlock2D(g, 'mid_block.resnets.0', x, temb, top, midOpts);
  if (cfg.midBlockType === 'UNetMidBlock2D') return x;
  x = tx('mid_block.attentions.0', x, n - 1, cfg.heads[n - 1]!, cfg.transformerLayers[n - 1]!);
  return resnetBlock2D(g, 'mid_block.resnets.1', x, temb, top, midOpts);
}

/** Graph input names of a ControlNet's residuals in the U-Net variant that takes them (diffusers' forward arguments). */
export const DOWN_RESIDUAL_INPUT = 'down_block_additional_residual';
export const MID_RESIDUAL_INPUT = 'mid_block_additional_residual';

/**
 * The U-Net graph for one input shape. Inputs: sample, timestep [B], encoder_hidden_states,
 * text_embeds [B, P] and time_ids [B, 6] for a text_time model, timestep_cond [B, time_cond_proj_dim]
 * for a guidance-distilled one (+ the variant's); with `shape.controlResiduals`, a ControlNet's
 * residuals too (`down_block_additional_residual_0…`, `mid_block_additional_residual`), added to
 * the skip connections and the mid block's output. `cache`: one of DeepCache's two graphs
 * (unet-cache.ts); the shallow one takes the residuals of the skips it has, and no mid one.
 */
export function buildUNetGraph(cfg: UNetConfig, weights: WeightSource | undefined, shape: UNetShape, variant: AttentionVariant, opts: GraphOptions = {}, cache?: CacheGraph): GraphBuilder {
  const g = new GraphBuilder('unet', weights, undefined, opts);
  const { batch: b, height: h, width: w } = shape;
  let x = g.toCompute(g.input('sample', [b, cfg.inChannels, h, w]));
  const temb = timeEmbedding(g, cfg, b);
  const text = g.toCompute(g.input('encoder_hidden_states', [b, shape.textLength, cfg.crossAttentionDim]));
  const tx = transformerAt(g, cfg, text, variant, [h, w], attentionLevels(cfg));

  if (cfg.centerInputSample) x = g.sub(g.mul(x, 2), 1);
  // The shallow graph stops the down path at the cache point and takes the deep feature there.
  const shallow = cache?.graph === 'shallow' ? cache.point : undefined;
  const skips = downBlocks(g, cfg, conv2d(g, 'conv_in', x, cfg.blockOutChannels[0]!, 3, { pad: 1 }), temb, tx, shallow);
  if (!shallow) x = midBlock(g, cfg, skips[skips.length - 1]!, temb, tx);
  if (shape.controlResiduals) {
    skips.forEach((s, i) => (skips[i] = g.add(s, g.toCompute(g.input(`${DOWN_RESIDUAL_INPUT}_${i}`, s.shape)))));
    if (!shallow) x = g.add(x, g.toCompute(g.input(MID_RESIDUAL_INPUT, x.shape)));
  }

  const resOpts = { groups: cfg.groups, eps: cfg.eps };
  const n = cfg.blockOutChannels.length;
  const entry = cache ? cacheEntry(cfg, cache.point) : undefined;
  // Up layers (j = layersPerBlock + 1: the upsampler) left out of the shallow graph: the cached deep part.
  const cached = (i: number, j: number): boolean => shallow !== undefined && entry !== undefined && (i < entry.upBlock || (i === entry.upBlock && j < entry.resnet));
  const heads = [...cfg.heads].reverse();
  cfg.upBlockTypes.forEach((type, i) => {
    const out = [...cfg.blockOutChannels].reverse()[i]!;
    const level = n - 1 - i;
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      if (entry && i === entry.upBlock && j === entry.resnet) {
        const skip = skips[skips.length - 1]!;
        if (shallow) x = g.toCompute(g.input(DEEP_FEATURE, [b, entryChannels(cfg, entry), skip.dim(2), skip.dim(3)]));
        else g.output(x, DEEP_FEATURE);
      } else if (cached(i, j)) continue;
      x = g.concat([x, skips.pop()!], 1);
      x = resnetBlock2D(g, `up_blocks.${i}.resnets.${j}`, x, temb, out, resOpts);
      if (type === 'CrossAttnUpBlock2D') x = tx(`up_blocks.${i}.attentions.${j}`, x, level, heads[i]!, cfg.reverseTransformerLayers[i]!);
    }
    if (i < n - 1 && !cached(i, cfg.layersPerBlock + 1)) {
      // Up to the next skip's size, so odd latent sizes come back exactly (diffusers' upsample_size).
      const next = skips[skips.length - 1]!;
      x = upsample2D(g, `up_blocks.${i}.upsamplers.0`, x, [next.dim(2), next.dim(3)]);
    }
  });

  x = g.silu(groupNorm(g, 'conv_norm_out', x, cfg.groups, cfg.eps));
  x = conv2d(g, 'conv_out', x, cfg.outChannels, 3, { pad: 1 });
  g.output(x, 'out_sample');
  return g;
}

export interface UNetPlan {
  graph: GraphDef;
  flops: FlopCount;
  attentionCalls: readonly AttentionCall[];
  variant: AttentionVariant;
}

export interface LoadOptions extends RuntimeOptions {
  attention?: AttentionOptions;
  /** LoRAs merged into the weights (kohya-ss / A1111 / diffusers files). */
  loras?: LoraSpec[];
}

export interface UNetForwardOptions {
  /** With ToDo's `stopAt`: false runs this step with dense attention. Default true. */
  attentionActive?: boolean;
  /** SDXL (text_time): the pooled text embedding [B, P]; ignored by other U-Nets. */
  textEmbeds?: Tensor;
  /** SDXL (text_time): [B, 6] original height, width, crop top, left, target height, width. */
  timeIds?: Tensor;
  /** Guidance-distilled U-Nets (time_cond_proj_dim): the guidance scale's embedding [B, time_cond_proj_dim]; ignored by others. */
  timestepCond?: Tensor;
  /** A ControlNet's output (summed over several), added inside the U-Net as diffusers' down_block_additional_residuals / mid_block_additional_residual. */
  controlResiduals?: ControlResiduals;
}

/**
 * What a ControlNet adds to a U-Net: one residual per skip connection, conv_in's first, and one
 * after the mid block; for DeepCache's shallow graph only the skips above the cache point and no mid one.
 */
export interface ControlResiduals {
  down: Tensor[];
  mid?: Tensor;
}

export class UNet extends AttentionComponent implements LoraHost {
  readonly loraComponent = 'unet';
  private targets?: LoraTargets;
  private shapes?: ReadonlyMap<string, number[]>;

  private constructor(
    readonly config: UNetConfig,
    resolved: ResolvedAttention,
    rt: ComponentRuntime,
  ) {
    super(resolved, rt);
  }

  private readonly plans = new PlanCache<UNetPlan>(PLANS_KEPT);
  /** DeepCache's shallow graph runs in a session of its own, beside the full graph's. */
  private shallowRt?: ComponentRuntime;
  private sessionSlots = 1;

  static async load(dir: string, opts: LoadOptions = {}): Promise<UNet> {
    const comp = openComponent(dir, 'unet', ['UNet2DConditionModel']);
    const cfg = parseUNetConfig(comp.config);
    const attention = resolveAttention(opts.attention ?? { method: 'dense' });
    const weights = comp.weights;
    // Build once at a small size so that missing or mis-shaped weights fail at load time.
    const probe = 2 ** (cfg.blockOutChannels.length - 1);
    buildUNetGraph(cfg, weights, { batch: 1, height: probe, width: probe, textLength: 1 }, denseAttention);
    const unet = new UNet(cfg, attention, new ComponentRuntime('unet', weights, comp.config, await resolveRuntime(opts)));
    if (opts.loras?.length) applyLoras(openLoras(opts.loras), [unet], { strict: false, onWarning: opts.onWarning });
    return unet;
  }

  /** Every weight's shape, as the graph asks for them (built once at a small size). */
  private weightShapes(): ReadonlyMap<string, number[]> {
    if (!this.shapes) {
      const recorder = new WeightRecorder();
      const probe = 2 ** (this.config.blockOutChannels.length - 1);
      buildUNetGraph(this.config, recorder, { batch: 1, height: probe, width: probe, textLength: 1 }, denseAttention);
      this.shapes = recorder.shapes;
    }
    return this.shapes;
  }

  /** The weights a LoRA may change, by every name LoRA files use for them. */
  loraTargets(): LoraTargets {
    this.targets ??= unetLoraTargets(this.config, this.weightShapes());
    return this.targets;
  }

  /** The bytes of weights a session holds (each open session has its own copy), in the graphs' compute type. */
  sessionWeightBytes(): number {
    const params = [...this.weightShapes().values()].reduce((a, shape) => a + shape.reduce((p, d) => p * d, 1), 0);
    return params * (this.rt.graph.precision === 'fp32' ? 4 : 2);
  }

  setLoraPatches(patches: LoraPatches): void {
    this.rt.weights.setPatches(patches);
    this.plans.clear();
  }

  /** The graph this U-Net runs for one input shape (or one of DeepCache's two graphs), with the attention variant that fed it. */
  plan(shape: UNetShape, cache?: CacheGraph): UNetPlan {
    return this.plans.get(JSON.stringify({ shape, attention: this.resolved.options, cache }), () => {
      const variant = this.resolved.variant({ latent: [shape.height, shape.width] });
      const builder = buildUNetGraph(this.config, this.rt.weights, shape, variant, this.rt.graph, cache);
      return { graph: builder.build(), flops: builder.flops, attentionCalls: builder.attentionCalls, variant };
    });
  }

  /**
   * Sessions kept open for the whole U-Net's graphs and for DeepCache's shallow ones, each
   * holding its graph's weights: more than one where a caller alternates shapes (the pipeline
   * does not: NGMS splits its guided calls to keep one batch size).
   */
  async keepSessions(whole: number, shallow = whole): Promise<void> {
    this.sessionSlots = shallow;
    await Promise.all([this.rt.keepSessions(whole), this.shallowRt?.keepSessions(shallow)]);
  }

  /** Predicts the noise (or v) for `sample` [B, C, H, W] at `timestep`, conditioned on text [B, L, D]. */
  async forward(sample: Tensor, timestep: number, encoderHiddenStates: Tensor, opts: UNetForwardOptions = {}): Promise<Tensor> {
    await this.closeShallow();
    return (await this.run(sample, timestep, encoderHiddenStates, opts)).out_sample!;
  }

  /**
   * DeepCache (pipeline/deepcache.ts): without `feature`, the whole U-Net, which also returns its
   * hidden state at the cache point; with the feature of an earlier full step, only the shallow
   * part above the cache point (unet-cache.ts), which returns that feature again.
   */
  async forwardCached(sample: Tensor, timestep: number, encoderHiddenStates: Tensor, cache: { point: CachePoint; feature?: Tensor }, opts: UNetForwardOptions = {}): Promise<{ sample: Tensor; feature: Tensor }> {
    checkCachePoint(this.config, cache.point);
    const graph: CacheGraph = { point: cache.point, graph: cache.feature ? 'shallow' : 'full' };
    const out = await this.run(sample, timestep, encoderHiddenStates, opts, graph, cache.feature);
    return { sample: out.out_sample!, feature: cache.feature ?? out[DEEP_FEATURE]! };
  }

  private async run(sample: Tensor, timestep: number, encoderHiddenStates: Tensor, opts: UNetForwardOptions, cache?: CacheGraph, feature?: Tensor): Promise<Record<string, Tensor>> {
    const c = this.config;
    checkInput('unet', 'sample', sample, [null, c.inChannels, null, null], 'batch, latent channels, height/8, width/8');
    const [b, , h, w] = sample.dims as [number, number, number, number];
    checkInput('unet', 'encoder_hidden_states', encoderHiddenStates, [b, null, c.crossAttentionDim], 'same batch as sample, tokens, cross_attention_dim');
    if (!Number.isFinite(timestep)) throw new Error(`unet: timestep must be a finite number; got ${timestep}`);
    const residuals = opts.controlResiduals;
    const shape: UNetShape = { batch: b, height: h, width: w, textLength: encoderHiddenStates.dims[1]!, ...(residuals ? { controlResiduals: true } : {}) };
    const feeds: Feed[] = [
      { name: 'sample', type: 'float32', value: sample },
      { name: 'timestep', type: 'float32', value: { data: new Float32Array(b).fill(timestep), dims: [b] } },
      { name: 'encoder_hidden_states', type: 'float32', value: encoderHiddenStates },
    ];
    if (c.textTime) feeds.push(...this.textTimeFeeds(b, opts));
    if (c.timeCondProjDim !== null) feeds.push(this.timestepCondFeed(b, opts));
    const plan = this.plan(shape, cache);
    if (feature) {
      const dims = plan.graph.inputs.find((i) => i.name === DEEP_FEATURE)!.shape;
      checkInput('unet', 'the DeepCache feature', feature, dims, "a full step's feature at the same cache point, batch and size");
      feeds.push({ name: DEEP_FEATURE, type: 'float32', value: feature });
    }
    if (residuals) feeds.push(...residualFeeds(plan.graph, residuals));
    feeds.push(...plan.variant.feeds({ active: opts.attentionActive !== false }));
    const rt = cache?.graph === 'shallow' ? await this.shallowRuntime() : this.rt;
    const out = await rt.run({ shape, attention: this.resolved.options, ...(cache && { cache }) }, () => plan.graph, feeds);
    return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, { data: t.data as Float32Array, dims: [...t.dims] }]));
  }

  /** A plain forward ends DeepCache's use of the shallow graph: its session (its weights) goes. */
  private async closeShallow(): Promise<void> {
    const rt = this.shallowRt;
    this.shallowRt = undefined;
    await rt?.dispose();
  }

  private async shallowRuntime(): Promise<ComponentRuntime> {
    if (!this.shallowRt) {
      this.shallowRt = new ComponentRuntime(this.rt.name, this.rt.weights, this.rt.config, this.rt.runtime);
      await this.shallowRt.keepSessions(this.sessionSlots);
    }
    return this.shallowRt;
  }

  private textTimeFeeds(b: number, opts: UNetForwardOptions): Feed[] {
    const { textEmbedDim } = this.config.textTime!;
    if (!opts.textEmbeds || !opts.timeIds) {
      throw new Error(
        'unet: this is an SDXL U-Net (addition_embed_type "text_time"): pass { textEmbeds, timeIds } as the 4th argument of forward() — ' +
          `textEmbeds [${b}, ${textEmbedDim}] (pooled text embedding) and timeIds [${b}, ${TIME_IDS}] (height, width, crop top, crop left, target height, target width)`,
      );
    }
    checkInput('unet', 'textEmbeds', opts.textEmbeds, [b, textEmbedDim], 'batch, pooled text width');
    checkInput('unet', 'timeIds', opts.timeIds, [b, TIME_IDS], 'batch, original h/w + crop top/left + target h/w');
    return [
      { name: 'text_embeds', type: 'float32', value: opts.textEmbeds },
      { name: 'time_ids', type: 'float32', value: opts.timeIds },
    ];
  }

  private timestepCondFeed(b: number, opts: UNetForwardOptions): Feed {
    const dim = this.config.timeCondProjDim!;
    if (!opts.timestepCond) {
      throw new Error(`unet: this U-Net is guidance-distilled (time_cond_proj_dim ${dim}, an LCM): pass { timestepCond } [${b}, ${dim}], the guidance scale's embedding, as the 4th argument of forward()`);
    }
    checkInput('unet', 'timestepCond', opts.timestepCond, [b, dim], 'batch, time_cond_proj_dim');
    return { name: 'timestep_cond', type: 'float32', value: opts.timestepCond };
  }

  /**
   * forward() on onnxruntime tensors that may live on the device (runtime/device-tensors.ts);
   * on a WebGPU session the output stays there.
   */
  async forwardOnDevice(sample: ort.Tensor, timestep: number, encoderHiddenStates: ort.Tensor, opts: UNetForwardOptions = {}): Promise<ort.Tensor> {
    await this.closeShallow();
    const [b, , h, w] = sample.dims as [number, number, number, number];
    const shape: UNetShape = { batch: b, height: h, width: w, textLength: encoderHiddenStates.dims[1]! };
    const plan = this.plan(shape);
    const inputs: Record<string, ort.Tensor> = { sample, encoder_hidden_states: encoderHiddenStates };
    const feeds: Feed[] = [{ name: 'timestep', type: 'float32', value: { data: new Float32Array(b).fill(timestep), dims: [b] } }];
    if (this.config.textTime) feeds.push(...this.textTimeFeeds(b, opts));
    if (this.config.timeCondProjDim !== null) feeds.push(this.timestepCondFeed(b, opts));
    feeds.push(...plan.variant.feeds({ active: opts.attentionActive !== false }));
    for (const f of feeds) {
      inputs[f.name] = f.type === 'float32' ? new ort.Tensor('float32', f.value.data, [...f.value.dims]) : new ort.Tensor(f.type, f.data, [...f.dims]);
    }
    const out = await this.rt.runOnDevice({ shape, attention: this.resolved.options }, () => plan.graph, inputs);
    return out.out_sample!;
  }

  override async dispose(): Promise<void> {
    await Promise.all([this.rt.dispose(), this.closeShallow()]);
  }
}

/**
 * The residual feeds of the U-Net graph that takes them, each checked against its input's shape;
 * DeepCache's shallow graph takes only the skips it has, and no mid residual.
 */
function residualFeeds(graph: GraphDef, r: ControlResiduals): Feed[] {
  const inputs = graph.inputs.filter((i) => i.name.startsWith(DOWN_RESIDUAL_INPUT));
  if (!Array.isArray(r.down) || r.down.length !== inputs.length) {
    throw new Error(`unet: controlResiduals.down must hold ${inputs.length} tensors (one per skip connection this graph has); got ${Array.isArray(r.down) ? r.down.length : 'none'}`);
  }
  const mid = graph.inputs.find((i) => i.name === MID_RESIDUAL_INPUT);
  if (mid && !r.mid) throw new Error('unet: controlResiduals.mid is missing: the whole U-Net adds a residual to its mid block');
  if (!mid && r.mid) throw new Error("unet: controlResiduals.mid given, but DeepCache's shallow graph has no mid block: leave it out");
  const pairs = inputs.map((i, k) => ({ i, t: r.down[k]! }));
  if (mid) pairs.push({ i: mid, t: r.mid! });
  return pairs.map(({ i, t }) => {
    checkInput('unet', `ControlNet residual ${i.name}`, t, i.shape, 'the skip connection it is added to');
    return { name: i.name, type: 'float32', value: t };
  });
}

export function loadUNet(dir: string, opts: LoadOptions = {}): Promise<UNet> {
  return UNet.load(dir, opts);
}
