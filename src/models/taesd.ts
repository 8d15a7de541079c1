/**
 * diffusers' AutoencoderTiny (TAESD, madebyollin/taesd): EncoderTiny and DecoderTiny, each one
 * nn.Sequential `layers` of 3x3 convolutions and AutoencoderTinyBlocks (conv-act-conv-act-conv
 * plus a skip, through a ReLU), no normalisation and no attention, with diffusers' weight keys
 * (`encoder.layers.N.*`, `decoder.layers.N.*`). The decoder soft-clamps its input with
 * tanh(x / 3) · 3 and returns [-1, 1]; the encoder takes [-1, 1]. Its scaling_factor is 1: it
 * works on the latents a Stable Diffusion U-Net sees, unscaled.
 */
import { GraphBuilder, type GraphOptions, type Value } from '../graph/builder.js';
import type { WeightFiles, WeightSource } from '../graph/weights.js';
import { resolveRuntime } from '../runtime/provider.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import { ComponentRuntime, checkInput } from './component.js';
import { conv2d, interpolateNearest } from './layers.js';
import { CheckpointWeights } from './single-file/weights.js';
import { openTinyVAE, type TinyVAEFamily } from './taesd-source.js';
import { UserError } from '../errors.js';

export type { TinyVAEFamily } from './taesd-source.js';

export interface TinyVAEConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  encoderBlockOutChannels: number[];
  decoderBlockOutChannels: number[];
  /** AutoencoderTinyBlocks per level: the encoder's from the image side, the decoder's from the latent side. */
  numEncoderBlocks: number[];
  numDecoderBlocks: number[];
  actFn: TinyActivation;
  /** scale_latents / unscale_latents: raw latents ↔ [0, 1] as x / (2 · magnitude) + shift. */
  latentMagnitude: number;
  latentShift: number;
  /** 1 for every published TAESD: diffusers pipelines divide by it before decoding. */
  scalingFactor: number;
  /** Image pixels per latent pixel: 2^(levels − 1). */
  scale: number;
  forceUpcast: boolean;
}

const ACTIVATIONS = ['relu', 'silu', 'swish', 'gelu'] as const;
type TinyActivation = (typeof ACTIVATIONS)[number];

function list(c: Record<string, unknown>, key: string, fallback: number[]): number[] {
  const v = c[key] ?? fallback;
  if (!Array.isArray(v) || v.length === 0 || !v.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new UserError(`AutoencoderTiny config: ${key} must be a non-empty list of integers; got ${JSON.stringify(v)}`);
  }
  return v as number[];
}

/** AutoencoderTiny's config.json, with its constructor's defaults (those of madebyollin/taesd). */
export function parseTinyVAEConfig(c: Record<string, unknown>): TinyVAEConfig {
  const encoderBlockOutChannels = list(c, 'encoder_block_out_channels', [64, 64, 64, 64]);
  const decoderBlockOutChannels = list(c, 'decoder_block_out_channels', [64, 64, 64, 64]);
  const numEncoderBlocks = list(c, 'num_encoder_blocks', [1, 3, 3, 3]);
  const numDecoderBlocks = list(c, 'num_decoder_blocks', [3, 3, 3, 1]);
  if (numEncoderBlocks.length !== encoderBlockOutChannels.length) throw new UserError('AutoencoderTiny config: num_encoder_blocks and encoder_block_out_channels differ in length');
  if (numDecoderBlocks.length !== decoderBlockOutChannels.length) throw new UserError('AutoencoderTiny config: num_decoder_blocks and decoder_block_out_channels differ in length');
  if (encoderBlockOutChannels.length !== decoderBlockOutChannels.length) {
    throw new UserError(`AutoencoderTiny config: the encoder has ${encoderBlockOutChannels.length} levels and the decoder ${decoderBlockOutChannels.length}; they must mirror each other`);
  }
  // EncoderTiny / DecoderTiny chain their levels without a channel projection: torch itself fails on unequal widths.
  for (const [key, channels] of [
    ['encoder_block_out_channels', encoderBlockOutChannels],
    ['decoder_block_out_channels', decoderBlockOutChannels],
  ] as const) {
    if (channels.some((ch) => ch !== channels[0] || ch === 0)) throw new UserError(`AutoencoderTiny config: ${key} must repeat one width (diffusers chains the levels without a projection); got [${channels.join(', ')}]`);
  }
  const actFn = (c.act_fn ?? 'relu') as TinyActivation;
  if (!ACTIVATIONS.includes(actFn)) throw new UserError(`AutoencoderTiny config: act_fn "${String(actFn)}" is not supported; use one of ${ACTIVATIONS.join(', ')}`);
  const upsampling = c.upsampling_scaling_factor ?? 2;
  if (upsampling !== 2) throw new UserError(`AutoencoderTiny config: upsampling_scaling_factor ${String(upsampling)} would not invert the encoder's stride-2 levels; only 2 (TAESD's) is supported`);
  const upsampleFn = c.upsample_fn ?? 'nearest';
  if (upsampleFn !== 'nearest') throw new UserError(`AutoencoderTiny config: upsample_fn "${String(upsampleFn)}" is not supported; only "nearest" (TAESD's)`);
  return {
    inChannels: (c.in_channels as number | undefined) ?? 3,
    outChannels: (c.out_channels as number | undefined) ?? 3,
    latentChannels: (c.latent_channels as number | undefined) ?? 4,
    encoderBlockOutChannels,
    decoderBlockOutChannels,
    numEncoderBlocks,
    numDecoderBlocks,
    actFn,
    latentMagnitude: (c.latent_magnitude as number | undefined) ?? 3,
    latentShift: (c.latent_shift as number | undefined) ?? 0.5,
    scalingFactor: (c.scaling_factor as number | undefined) ?? 1,
    scale: 2 ** (decoderBlockOutChannels.length - 1),
    forceUpcast: (c.force_upcast as boolean | undefined) ?? false,
  };
}

/** One module of EncoderTiny's or DecoderTiny's `layers`, in order (its index is its key). */
export type TinyLayer = { kind: 'conv'; out: number; stride: 1 | 2; bias: boolean } | { kind: 'block'; channels: number } | { kind: 'act' } | { kind: 'upsample' };

export function encoderLayers(cfg: TinyVAEConfig): TinyLayer[] {
  const layers: TinyLayer[] = [];
  cfg.numEncoderBlocks.forEach((n, i) => {
    const ch = cfg.encoderBlockOutChannels[i]!;
    layers.push(i === 0 ? { kind: 'conv', out: ch, stride: 1, bias: true } : { kind: 'conv', out: ch, stride: 2, bias: false });
    for (let b = 0; b < n; b++) layers.push({ kind: 'block', channels: ch });
  });
  layers.push({ kind: 'conv', out: cfg.latentChannels, stride: 1, bias: true });
  return layers;
}

export function decoderLayers(cfg: TinyVAEConfig): TinyLayer[] {
  const layers: TinyLayer[] = [{ kind: 'conv', out: cfg.decoderBlockOutChannels[0]!, stride: 1, bias: true }, { kind: 'act' }];
  cfg.numDecoderBlocks.forEach((n, i) => {
    const ch = cfg.decoderBlockOutChannels[i]!;
    const last = i === cfg.numDecoderBlocks.length - 1;
    for (let b = 0; b < n; b++) layers.push({ kind: 'block', channels: ch });
    if (!last) layers.push({ kind: 'upsample' });
    layers.push({ kind: 'conv', out: last ? cfg.outChannels : ch, stride: 1, bias: last });
  });
  return layers;
}

function activation(g: GraphBuilder, x: Value, act: TinyActivation): Value {
  if (act === 'relu') return g.relu(x);
  return act === 'gelu' ? g.gelu(x) : g.silu(x);
}

/** AutoencoderTinyBlock with equal in and out widths: relu(conv(act(conv(act(conv(x))))) + x). */
function tinyBlock(g: GraphBuilder, key: string, x: Value, channels: number, act: TinyActivation): Value {
  const h = g.scoped(key, () => {
    let y = activation(g, conv2d(g, `${key}.conv.0`, x, channels, 3, { pad: 1 }), act);
    y = activation(g, conv2d(g, `${key}.conv.2`, y, channels, 3, { pad: 1 }), act);
    return conv2d(g, `${key}.conv.4`, y, channels, 3, { pad: 1 });
  });
  return g.relu(g.add(h, x));
}

function runLayers(g: GraphBuilder, part: 'encoder' | 'decoder', layers: readonly TinyLayer[], x: Value, act: TinyActivation): Value {
  layers.forEach((l, i) => {
    const key = `${part}.layers.${i}`;
    if (l.kind === 'conv') x = conv2d(g, key, x, l.out, 3, { pad: 1, stride: l.stride, bias: l.bias });
    else if (l.kind === 'block') x = tinyBlock(g, key, x, l.channels, act);
    else if (l.kind === 'act') x = activation(g, x, act);
    else x = interpolateNearest(g, x, [x.dim(2) * 2, x.dim(3) * 2]);
  });
  return x;
}

/** latents [B, latent, h, w] (the U-Net's, scaling_factor 1) → image [B, 3, h·scale, w·scale] in [-1, 1]. */
export function buildTinyDecoderGraph(cfg: TinyVAEConfig, weights: WeightSource | undefined, shape: { batch: number; height: number; width: number }, opts: GraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder('taesd_decoder', weights, undefined, opts);
  const z = g.toCompute(g.input('latents', [shape.batch, cfg.latentChannels, shape.height, shape.width]));
  const clamped = g.mul(g.tanh(g.div(z, 3)), 3);
  const x = runLayers(g, 'decoder', decoderLayers(cfg), clamped, cfg.actFn);
  g.output(g.sub(g.mul(x, 2), 1), 'image');
  return g;
}

/** image [B, 3, H, W] in [-1, 1] → latents [B, latent, H/scale, W/scale] (AutoencoderTiny.encode(x).latents). */
export function buildTinyEncoderGraph(cfg: TinyVAEConfig, weights: WeightSource | undefined, shape: { batch: number; height: number; width: number }, opts: GraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder('taesd_encoder', weights, undefined, opts);
  const image = g.toCompute(g.input('image', [shape.batch, cfg.inChannels, shape.height, shape.width]));
  g.output(runLayers(g, 'encoder', encoderLayers(cfg), g.div(g.add(image, 1), 2), cfg.actFn), 'latents');
  return g;
}

/**
 * Builds a graph on `weights`, recording what it asks for. In madebyollin's files every tensor
 * must be asked for: one left over means another architecture (TAESD for SANA, F32 variants).
 */
function checkWeights(weights: WeightFiles, build: (w: WeightSource) => void, name: string): void {
  const asked = new Set<string>();
  build({ get: (key, shape) => (asked.add(key), weights.get(key, shape)) });
  if (!(weights instanceof CheckpointWeights)) return;
  const unused = [...weights.slots.keys()].filter((k) => !asked.has(k));
  if (unused.length > 0) {
    const original = unused.slice(0, 3).map((k) => weights.slots.get(k)!.key);
    throw new UserError(`${name}: tensors ${original.join(', ')}${unused.length > 3 ? ', …' : ''} have no place in a TAESD ${weights.component.replace('taesd_', '')} of this shape; the file holds another architecture`);
  }
}

export interface TinyVAELoadOptions extends RuntimeOptions {
  /** The family this TAESD was made for, where its file or folder name does not say (`taesd` → sd, `taesdxl` → sdxl). */
  family?: TinyVAEFamily;
}

export class TinyVAE {
  private constructor(
    readonly config: TinyVAEConfig,
    /** The model family it was made for (its name's, or stated); undefined when neither says. */
    readonly family: TinyVAEFamily | undefined,
    /** What was loaded, for messages. */
    readonly source: string,
    private readonly decoder: { weights: WeightFiles; runtime: ComponentRuntime } | undefined,
    private readonly encoder: { weights: WeightFiles; runtime: ComponentRuntime } | undefined,
  ) {}

  /**
   * `source`: a diffusers AutoencoderTiny folder (or a model folder whose `vae/` is one, or its
   * weights file beside config.json), or madebyollin's single files (`taesd_decoder.safetensors`,
   * with `taesd_encoder.safetensors` beside it read too; either alone is enough for its half).
   */
  static async load(source: string, opts: TinyVAELoadOptions = {}): Promise<TinyVAE> {
    const src = openTinyVAE(source);
    const cfg = parseTinyVAEConfig(src.config);
    // Missing or mis-shaped weights fail here, not at the first run; so do weights the graphs never use.
    if (src.decoder) checkWeights(src.decoder, (w) => buildTinyDecoderGraph(cfg, w, { batch: 1, height: 1, width: 1 }), src.name);
    if (src.encoder) checkWeights(src.encoder, (w) => buildTinyEncoderGraph(cfg, w, { batch: 1, height: cfg.scale, width: cfg.scale }), src.name);
    const rt = await resolveRuntime(opts);
    const part = (name: string, weights: WeightFiles | undefined): { weights: WeightFiles; runtime: ComponentRuntime } | undefined =>
      weights && { weights, runtime: new ComponentRuntime(name, weights, src.config, rt, { fp32Only: cfg.forceUpcast, activationArena: false }) };
    return new TinyVAE(cfg, opts.family ?? src.family, src.name, part('taesd_decoder', src.decoder), part('taesd_encoder', src.encoder));
  }

  /** Throws, naming the file to add, unless the decoder is at hand. */
  requireDecoder(): void {
    if (!this.decoder) throw new UserError(`${this.source} holds only a TAESD encoder; decoding needs its decoder (taesd_decoder.safetensors / taesdxl_decoder.safetensors beside it, or a diffusers AutoencoderTiny folder)`);
  }

  /** Throws, naming the file to add, unless the encoder is at hand. */
  requireEncoder(): void {
    if (!this.encoder) throw new UserError(`${this.source} holds only a TAESD decoder; encoding (image-to-image, inpainting, a hires fix that upscales the image) needs its encoder: put taesd_encoder.safetensors (taesdxl_encoder.safetensors for SDXL) beside it`);
  }

  /** latents [B, C, h, w] as the U-Net produces them → image [B, 3, h·s, w·s] in [-1, 1]. */
  async decode(latents: Tensor): Promise<Tensor> {
    this.requireDecoder();
    const d = this.decoder!;
    checkInput('taesd', 'latents', latents, [null, this.config.latentChannels, null, null], 'batch, latent channels, height, width');
    const [batch, , height, width] = latents.dims as [number, number, number, number];
    const shape = { batch, height, width };
    const out = await d.runtime.run({ shape, part: 'decoder' }, () => buildTinyDecoderGraph(this.config, d.weights, shape, d.runtime.graph).build(), [{ name: 'latents', type: 'float32', value: latents }]);
    return { data: out.image!.data as Float32Array, dims: [...out.image!.dims] };
  }

  /** image [B, 3, H, W] in [-1, 1], H and W multiples of the scale → latents as the U-Net takes them (no sampling). */
  async encode(image: Tensor): Promise<Tensor> {
    this.requireEncoder();
    const e = this.encoder!;
    checkInput('taesd', 'image', image, [null, this.config.inChannels, null, null], 'batch, channels, height, width');
    const [batch, , height, width] = image.dims as [number, number, number, number];
    if (height % this.config.scale || width % this.config.scale) throw new UserError(`taesd: image height and width must be multiples of ${this.config.scale}; got ${height}x${width}`);
    const shape = { batch, height, width };
    const out = await e.runtime.run({ shape, part: 'encoder' }, () => buildTinyEncoderGraph(this.config, e.weights, shape, e.runtime.graph).build(), [{ name: 'image', type: 'float32', value: image }]);
    return { data: out.latents!.data as Float32Array, dims: [...out.latents!.dims] };
  }

  /** diffusers' scale_latents: raw latents → [0, 1] (to store them as 8-bit pixels). */
  scaleLatents(x: Tensor): Tensor {
    const { latentMagnitude: m, latentShift: s } = this.config;
    return { data: x.data.map((v) => Math.min(1, Math.max(0, v / (2 * m) + s))), dims: [...x.dims] };
  }

  /** diffusers' unscale_latents: [0, 1] → raw latents. */
  unscaleLatents(x: Tensor): Tensor {
    const { latentMagnitude: m, latentShift: s } = this.config;
    return { data: x.data.map((v) => (v - s) * (2 * m)), dims: [...x.dims] };
  }

  async dispose(): Promise<void> {
    await this.decoder?.runtime.dispose();
    await this.encoder?.runtime.dispose();
  }
}

export function loadTinyVAE(source: string, opts: TinyVAELoadOptions = {}): Promise<TinyVAE> {
  return TinyVAE.load(source, opts);
}
