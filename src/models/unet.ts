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
import { ComponentRuntime, checkInput } from './component.js';
import { conv2d, groupNorm, linear } from './layers.js';
import { downsample2D, resnetBlock2D, upsample2D } from './resnet.js';
import { transformer2D } from './transformer.js';
import { applyLoras, type LoraHost } from '../lora/apply.js';
import { openLoras, type LoraPatches, type LoraSpec } from '../lora/merge.js';
import { unetLoraTargets, type LoraTargets } from '../lora/names.js';

const DOWN_BLOCKS = ['CrossAttnDownBlock2D', 'DownBlock2D'] as const;
const UP_BLOCKS = ['CrossAttnUpBlock2D', 'UpBlock2D'] as const;
const MID_BLOCKS = ['UNetMidBlock2DCrossAttn'] as const;

export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  downBlockTypes: string[];
  upBlockTypes: string[];
  midBlockType: string | null;
  layersPerBlock: number;
  /** Heads per down block (diffusers' `num_attention_heads ?? attention_head_dim`). */
  heads: number[];
  transformerLayers: number[];
  reverseTransformerLayers: number[];
  crossAttentionDim: number;
  useLinearProjection: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  groups: number;
  eps: number;
  downsamplePadding: number;
  midBlockScaleFactor: number;
  centerInputSample: boolean;
  /** SDXL's `addition_embed_type: "text_time"`: pooled text + size/crop conditioning; null otherwise. */
  textTime: TextTimeConfig | null;
  /**
   * `time_cond_proj_dim` of guidance-distilled U-Nets (LCM): the width of the extra `timestep_cond`
   * input (the guidance scale's embedding), added to the timestep's through `time_embedding.cond_proj`.
   */
  timeCondProjDim: number | null;
}

export interface TextTimeConfig {
  /** Width of each time id's sinusoidal embedding (`addition_time_embed_dim`). */
  timeEmbedDim: number;
  /** Width of the pooled text embedding: `projection_class_embeddings_input_dim` − 6 · timeEmbedDim. */
  textEmbedDim: number;
}

/** SDXL's six time ids: original size, crop top-left, target size (height first). */
export const TIME_IDS = 6;

function perBlock(v: unknown, n: number, what: string): number[] {
  const list = Array.isArray(v) ? v : Array(n).fill(v);
  if (list.length !== n || !list.every((x) => Number.isInteger(x) && x > 0)) {
    throw new Error(`unet config: ${what} must be a positive integer or a list of ${n}; got ${JSON.stringify(v)}`);
  }
  return list as number[];
}

/** Reads and checks a diffusers UNet2DConditionModel config. */
export function parseUNetConfig(c: Record<string, unknown>): UNetConfig {
  const unsupported: [string, unknown][] = [
    ['class_embed_type', null],
    ['encoder_hid_dim_type', null],
    ['dual_cross_attention', false],
    ['only_cross_attention', false],
  ];
  for (const [k, ok] of unsupported) {
    const v = c[k] ?? ok;
    if (JSON.stringify(v) !== JSON.stringify(ok)) {
      throw new Error(`unet config: ${k} = ${JSON.stringify(v)} is not supported; todo-sd runs SD 1.x / 2.x / XL UNets`);
    }
  }
  const blockOut = c.block_out_channels as number[] | undefined;
  if (!Array.isArray(blockOut) || blockOut.length === 0) throw new Error('unet config: block_out_channels is missing');
  const n = blockOut.length;
  const down = (c.down_block_types as string[] | undefined) ?? [];
  const up = (c.up_block_types as string[] | undefined) ?? [];
  for (const [list, known, what] of [
    [down, DOWN_BLOCKS, 'down_block_types'],
    [up, UP_BLOCKS, 'up_block_types'],
  ] as const) {
    if (list.length !== n) throw new Error(`unet config: ${what} has ${list.length} entries for ${n} block_out_channels`);
    for (const t of list) {
      if (!(known as readonly string[]).includes(t)) throw new Error(`unet config: unknown block type "${t}" in ${what}; supported: ${known.join(', ')}`);
    }
  }
  const mid = c.mid_block_type === undefined ? 'UNetMidBlock2DCrossAttn' : (c.mid_block_type as string | null);
  if (mid !== null && !(MID_BLOCKS as readonly string[]).includes(mid)) {
    throw new Error(`unet config: unknown mid_block_type "${mid}"; supported: ${MID_BLOCKS.join(', ')}`);
  }
  if ((c.resnet_time_scale_shift ?? 'default') !== 'default') throw new Error(`unet config: resnet_time_scale_shift "${String(c.resnet_time_scale_shift)}" is not supported`);
  if ((c.conv_in_kernel ?? 3) !== 3 || (c.conv_out_kernel ?? 3) !== 3) throw new Error('unet config: only 3x3 conv_in / conv_out kernels are supported');
  const layers = perBlock(c.transformer_layers_per_block ?? 1, n, 'transformer_layers_per_block');
  const reverse = c.reverse_transformer_layers_per_block
    ? perBlock(c.reverse_transformer_layers_per_block, n, 'reverse_transformer_layers_per_block')
    : [...layers].reverse();
  const layersPerBlock = c.layers_per_block ?? 2;
  if (!Number.isInteger(layersPerBlock)) throw new Error('unet config: layers_per_block must be an integer (per-block lists are not supported)');
  const additionType = c.addition_embed_type ?? null;
  if (additionType !== null && additionType !== 'text_time') {
    throw new Error(`unet config: addition_embed_type = ${JSON.stringify(additionType)} is not supported; only "text_time" (SDXL) is`);
  }
  const condDim = c.time_cond_proj_dim ?? null;
  if (condDim !== null && !(Number.isInteger(condDim) && (condDim as number) > 0)) throw new Error(`unet config: time_cond_proj_dim must be a positive integer; got ${JSON.stringify(condDim)}`);
  const crossDim = c.cross_attention_dim ?? 1280;
  if (!Number.isInteger(crossDim)) throw new Error('unet config: cross_attention_dim must be an integer');
  return {
    inChannels: (c.in_channels as number) ?? 4,
    outChannels: (c.out_channels as number) ?? 4,
    blockOutChannels: blockOut,
    downBlockTypes: down,
    upBlockTypes: up,
    midBlockType: mid,
    layersPerBlock: layersPerBlock as number,
    // diffusers' naming quirk: SD's `attention_head_dim` is in fact the number of heads.
    heads: perBlock(c.num_attention_heads ?? c.attention_head_dim ?? 8, n, 'attention_head_dim / num_attention_heads'),
    transformerLayers: layers,
    reverseTransformerLayers: reverse,
    crossAttentionDim: crossDim as number,
    useLinearProjection: Boolean(c.use_linear_projection),
    flipSinToCos: (c.flip_sin_to_cos as boolean | undefined) ?? true,
    freqShift: (c.freq_shift as number | undefined) ?? 0,
    groups: (c.norm_num_groups as number | undefined) ?? 32,
    eps: (c.norm_eps as number | undefined) ?? 1e-5,
    downsamplePadding: (c.downsample_padding as number | undefined) ?? 1,
    midBlockScaleFactor: (c.mid_block_scale_factor as number | undefined) ?? 1,
    centerInputSample: Boolean(c.center_input_sample),
    textTime: additionType === 'text_time' ? parseTextTime(c) : null,
    timeCondProjDim: condDim as number | null,
  };
}

function parseTextTime(c: Record<string, unknown>): TextTimeConfig {
  const timeEmbedDim = c.addition_time_embed_dim;
  const input = c.projection_class_embeddings_input_dim;
  if (!Number.isInteger(timeEmbedDim) || (timeEmbedDim as number) <= 0 || !Number.isInteger(input)) {
    throw new Error('unet config: addition_embed_type "text_time" needs integer addition_time_embed_dim and projection_class_embeddings_input_dim');
  }
  const textEmbedDim = (input as number) - TIME_IDS * (timeEmbedDim as number);
  if (textEmbedDim <= 0) {
    throw new Error(`unet config: projection_class_embeddings_input_dim ${String(input)} leaves no room for the pooled text embedding after ${TIME_IDS} time ids of ${String(timeEmbedDim)}`);
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
 * The U-Net graph for one input shape. Inputs: sample, timestep [B], encoder_hidden_states,
 * text_embeds [B, P] and time_ids [B, 6] for a text_time model, timestep_cond [B, time_cond_proj_dim]
 * for a guidance-distilled one (+ the variant's).
 */
export function buildUNetGraph(cfg: UNetConfig, weights: WeightSource | undefined, shape: UNetShape, variant: AttentionVariant, opts: GraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder('unet', weights, undefined, opts);
  const { batch: b, height: h, width: w } = shape;
  let x = g.toCompute(g.input('sample', [b, cfg.inChannels, h, w]));
  const t = g.input('timestep', [b]);
  const text = g.toCompute(g.input('encoder_hidden_states', [b, shape.textLength, cfg.crossAttentionDim]));

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
  const temb = g.silu(emb);

  if (cfg.centerInputSample) x = g.sub(g.mul(x, 2), 1);
  x = conv2d(g, 'conv_in', x, c0, 3, { pad: 1 });
  const resOpts = { groups: cfg.groups, eps: cfg.eps };
  const withAttention = attentionLevels(cfg);
  const tx = (key: string, y: Value, level: number, heads: number, layers: number): Value =>
    transformer2D(g, key, y, text, {
      heads,
      layers,
      useLinearProjection: cfg.useLinearProjection,
      groups: cfg.groups,
      attention: variant,
      level,
      attentionLevel: withAttention.indexOf(level),
      latent: [h, w],
    });

  const skips: Value[] = [x];
  const n = cfg.blockOutChannels.length;
  cfg.downBlockTypes.forEach((type, i) => {
    const out = cfg.blockOutChannels[i]!;
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      x = resnetBlock2D(g, `down_blocks.${i}.resnets.${j}`, x, temb, out, resOpts);
      if (type === 'CrossAttnDownBlock2D') x = tx(`down_blocks.${i}.attentions.${j}`, x, i, cfg.heads[i]!, cfg.transformerLayers[i]!);
      skips.push(x);
    }
    if (i < n - 1) {
      x = downsample2D(g, `down_blocks.${i}.downsamplers.0`, x, cfg.downsamplePadding);
      skips.push(x);
    }
  });

  if (cfg.midBlockType) {
    const top = cfg.blockOutChannels[n - 1]!;
    const midOpts = { ...resOpts, outputScaleFactor: cfg.midBlockScaleFactor };
    x = resnetBlock2D(g, 'mid_block.resnets.0', x, temb, top, midOpts);
    x = tx('mid_block.attentions.0', x, n - 1, cfg.heads[n - 1]!, cfg.transformerLayers[n - 1]!);
    x = resnetBlock2D(g, 'mid_block.resnets.1', x, temb, top, midOpts);
  }

  const heads = [...cfg.heads].reverse();
  cfg.upBlockTypes.forEach((type, i) => {
    const out = [...cfg.blockOutChannels].reverse()[i]!;
    const level = n - 1 - i;
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      x = g.concat([x, skips.pop()!], 1);
      x = resnetBlock2D(g, `up_blocks.${i}.resnets.${j}`, x, temb, out, resOpts);
      if (type === 'CrossAttnUpBlock2D') x = tx(`up_blocks.${i}.attentions.${j}`, x, level, heads[i]!, cfg.reverseTransformerLayers[i]!);
    }
    if (i < n - 1) {
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
}

export class UNet implements LoraHost {
  readonly loraComponent = 'unet';
  private targets?: LoraTargets;

  private constructor(
    readonly config: UNetConfig,
    private resolved: ResolvedAttention,
    private readonly rt: ComponentRuntime,
  ) {}

  private lastPlan?: UNetPlan & { key: string };

  /** The config.json as the model folder has it. */
  get rawConfig(): Record<string, unknown> {
    return this.rt.config;
  }

  get attention(): ResolvedAttention {
    return this.resolved;
  }

  /** Switches the attention method; the next forward builds (or reuses from the cache) its graph. */
  setAttention(options: AttentionOptions): void {
    this.resolved = resolveAttention(options);
  }

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

  /** The weights a LoRA may change, by every name LoRA files use for them. */
  loraTargets(): LoraTargets {
    if (!this.targets) {
      const recorder = new WeightRecorder();
      const probe = 2 ** (this.config.blockOutChannels.length - 1);
      buildUNetGraph(this.config, recorder, { batch: 1, height: probe, width: probe, textLength: 1 }, denseAttention);
      this.targets = unetLoraTargets(this.config, recorder.shapes);
    }
    return this.targets;
  }

  setLoraPatches(patches: LoraPatches): void {
    this.rt.weights.setPatches(patches);
    this.lastPlan = undefined;
  }

  /** The graph this U-Net runs for one input shape, with the attention variant that fed it. */
  plan(shape: UNetShape): UNetPlan {
    const key = JSON.stringify({ shape, attention: this.resolved.options });
    if (this.lastPlan?.key !== key) {
      const variant = this.resolved.variant({ latent: [shape.height, shape.width] });
      const builder = buildUNetGraph(this.config, this.rt.weights, shape, variant, this.rt.graph);
      this.lastPlan = { key, graph: builder.build(), flops: builder.flops, attentionCalls: builder.attentionCalls, variant };
    }
    return this.lastPlan;
  }

  /** Predicts the noise (or v) for `sample` [B, C, H, W] at `timestep`, conditioned on text [B, L, D]. */
  async forward(sample: Tensor, timestep: number, encoderHiddenStates: Tensor, opts: UNetForwardOptions = {}): Promise<Tensor> {
    const c = this.config;
    checkInput('unet', 'sample', sample, [null, c.inChannels, null, null], 'batch, latent channels, height/8, width/8');
    const [b, , h, w] = sample.dims as [number, number, number, number];
    checkInput('unet', 'encoder_hidden_states', encoderHiddenStates, [b, null, c.crossAttentionDim], 'same batch as sample, tokens, cross_attention_dim');
    if (!Number.isFinite(timestep)) throw new Error(`unet: timestep must be a finite number; got ${timestep}`);
    const shape: UNetShape = { batch: b, height: h, width: w, textLength: encoderHiddenStates.dims[1]! };
    const feeds: Feed[] = [
      { name: 'sample', type: 'float32', value: sample },
      { name: 'timestep', type: 'float32', value: { data: new Float32Array(b).fill(timestep), dims: [b] } },
      { name: 'encoder_hidden_states', type: 'float32', value: encoderHiddenStates },
    ];
    if (c.textTime) feeds.push(...this.textTimeFeeds(b, opts));
    if (c.timeCondProjDim !== null) feeds.push(this.timestepCondFeed(b, opts));
    const plan = this.plan(shape);
    feeds.push(...plan.variant.feeds({ active: opts.attentionActive !== false }));
    const out = await this.rt.run({ shape, attention: this.resolved.options }, () => plan.graph, feeds);
    const t = out.out_sample!;
    return { data: t.data as Float32Array, dims: [...t.dims] };
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

  /** The runtime options it was loaded with (provider, precision, …). */
  get runtime(): RuntimeOptions {
    return this.rt.runtime;
  }

  /**
   * forward() on onnxruntime tensors that may live on the device (runtime/device-tensors.ts);
   * on a WebGPU session the output stays there.
   */
  async forwardOnDevice(sample: ort.Tensor, timestep: number, encoderHiddenStates: ort.Tensor, opts: UNetForwardOptions = {}): Promise<ort.Tensor> {
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

  dispose(): Promise<void> {
    return this.rt.dispose();
  }
}

export function loadUNet(dir: string, opts: LoadOptions = {}): Promise<UNet> {
  return UNet.load(dir, opts);
}
