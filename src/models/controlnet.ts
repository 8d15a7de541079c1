/**
 * diffusers' ControlNetModel (0.26), built from its `config.json` with diffusers' weight keys:
 * conv_in, time_embedding (+ add_embedding for SDXL's text_time), controlnet_cond_embedding
 * (conv_in, blocks, conv_out), down_blocks and mid_block — the U-Net's own builders, so the
 * two down paths are one piece of code — then controlnet_down_blocks (one 1x1 conv per skip
 * connection) and controlnet_mid_block. Outputs: the residuals the U-Net adds to its skip
 * connections and to its mid block's output, times the conditioning scales.
 */
import { existsSync } from 'node:fs';
import { UserError } from '../errors.js';
import { basename, dirname, join, resolve } from 'node:path';
import { denseAttention } from '../attention/dense.js';
import { resolveAttention, type AttentionOptions, type ResolvedAttention } from '../attention/options.js';
import type { AttentionVariant } from '../attention/variant.js';
import { GraphBuilder, type GraphDef, type GraphOptions, type Value } from '../graph/builder.js';
import type { WeightSource } from '../graph/weights.js';
import { resolveRuntime } from '../runtime/provider.js';
import type { Feed, RuntimeOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import { AttentionComponent, checkInput, ComponentRuntime, PlanCache } from './component.js';
import { conv2d } from './layers.js';
import { isSingleFile, openComponent, type ComponentSource } from './model-source.js';
import { openControlNetFile, type ControlNetHints } from './single-file/controlnet-file.js';
import { checkCachePoint, shallowSkipCount, type CachePoint } from './unet-cache.js';
import {
  downBlocks,
  midBlock,
  parseEncoderConfig,
  refuseUnsupported,
  TIME_IDS,
  timeEmbedding,
  transformerAt,
  type ControlResiduals,
  type UNetConfig,
  type UNetEncoderConfig,
} from './unet.js';

const MID_BLOCKS = ['UNetMidBlock2DCrossAttn', 'UNetMidBlock2D'];

/** The file extensions of single-file ControlNets (the ControlNet extension's list), safetensors first. */
export const CONTROLNET_EXTENSIONS = ['.safetensors', '.pth', '.pt', '.ckpt', '.bin'];

/** A ControlNet file's or folder's name without its extension (A1111's model name). */
export function controlNetName(path: string): string {
  const name = basename(path);
  const ext = CONTROLNET_EXTENSIONS.find((e) => name.toLowerCase().endsWith(e));
  return ext ? name.slice(0, -ext.length) : name;
}

export interface ControlNetConfig extends UNetEncoderConfig {
  /** Channels of the control image (`conditioning_channels`, 3 for RGB). */
  conditioningChannels: number;
  /** `conditioning_embedding_out_channels`: the control image is downsampled 2x between each. */
  conditioningEmbeddingChannels: number[];
  /** `controlnet_conditioning_channel_order`: 'bgr' flips the control image's channels. */
  channelOrder: 'rgb' | 'bgr';
  /** `global_pool_conditions` (the shuffle model): residuals averaged over the image; guess mode implied. */
  globalPoolConditions: boolean;
}

export function parseControlNetConfig(c: Record<string, unknown>): ControlNetConfig {
  refuseUnsupported(c, 'controlnet', [
    ['num_class_embeds', null],
    ['encoder_hid_dim', null],
  ]);
  const enc = parseEncoderConfig(c, 'controlnet', MID_BLOCKS);
  const embedding = c.conditioning_embedding_out_channels ?? [16, 32, 96, 256];
  if (!Array.isArray(embedding) || embedding.length === 0 || !embedding.every((v) => Number.isInteger(v) && (v as number) > 0)) {
    throw new UserError(`controlnet config: conditioning_embedding_out_channels must be a list of positive integers; got ${JSON.stringify(embedding)}`);
  }
  const order = c.controlnet_conditioning_channel_order ?? 'rgb';
  if (order !== 'rgb' && order !== 'bgr') throw new UserError(`controlnet config: controlnet_conditioning_channel_order must be "rgb" or "bgr"; got ${JSON.stringify(order)}`);
  const channels = c.conditioning_channels ?? 3;
  if (!Number.isInteger(channels) || (channels as number) < 1) throw new UserError(`controlnet config: conditioning_channels must be a positive integer; got ${JSON.stringify(channels)}`);
  return {
    ...enc,
    // diffusers' ControlNetModel has no time_cond_proj_dim: its time embedding takes no guidance embedding.
    timeCondProjDim: null,
    conditioningChannels: channels as number,
    conditioningEmbeddingChannels: embedding as number[],
    channelOrder: order,
    globalPoolConditions: Boolean(c.global_pool_conditions),
  };
}

/** How much smaller than the control image the latent is: the conditioning embedding's 2x steps. */
export function controlImageScale(cfg: ControlNetConfig): number {
  return 2 ** (cfg.conditioningEmbeddingChannels.length - 1);
}

/** Residuals for the U-Net's skip connections: conv_in's, one per resnet, one per downsampler. */
export function downResidualCount(cfg: UNetEncoderConfig): number {
  const n = cfg.blockOutChannels.length;
  return 1 + n * cfg.layersPerBlock + (n - 1);
}

/** Shapes of the residuals (down ones, then the mid one) for a batch of latents of h x w: conv_in's, each resnet's, each downsampler's (ceil(h / 2)). */
export function residualShapes(cfg: UNetEncoderConfig, batch: number, height: number, width: number): number[][] {
  const shapes: number[][] = [[batch, cfg.blockOutChannels[0]!, height, width]];
  let [h, w] = [height, width];
  cfg.blockOutChannels.forEach((c, i) => {
    for (let j = 0; j < cfg.layersPerBlock; j++) shapes.push([batch, c, h, w]);
    if (i < cfg.blockOutChannels.length - 1) {
      [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
      shapes.push([batch, c, h, w]);
    }
  });
  shapes.push([batch, cfg.blockOutChannels[cfg.blockOutChannels.length - 1]!, h, w]);
  return shapes;
}

/** The levels whose blocks have self-attention (the U-Net's down levels): ToDo counts its levels over these. */
export function controlNetAttentionLevels(cfg: UNetEncoderConfig): number[] {
  const n = cfg.blockOutChannels.length;
  return cfg.downBlockTypes.flatMap((t, i) => (t === 'CrossAttnDownBlock2D' || (i === n - 1 && cfg.midBlockType === 'UNetMidBlock2DCrossAttn') ? [i] : []));
}

/**
 * diffusers' scales of the residuals (down ones, then the mid one): `scale` for each, or in
 * guess mode `logspace(-1, 0, n) · scale` (0.1 for conv_in's residual up to 1 for the mid one).
 */
export function conditioningScales(cfg: UNetEncoderConfig, scale: number, guessMode: boolean): number[] {
  const n = downResidualCount(cfg) + 1;
  if (!guessMode) return Array<number>(n).fill(scale);
  return Array.from({ length: n }, (_, i) => Math.fround(10 ** (-1 + i / (n - 1))) * scale);
}

export interface ControlNetShape {
  batch: number;
  /** Latent height and width; the control image is controlImageScale times larger. */
  height: number;
  width: number;
  textLength: number;
  /** DeepCache's cache point: only the residuals of the U-Net's shallow graph. */
  shallow?: CachePoint;
}

export const CONDITIONING_SCALE_INPUT = 'conditioning_scale';

/** ControlNetConditioningEmbedding: conv_in, SiLU, then (3x3 conv, SiLU, strided 3x3 conv, SiLU) per step, conv_out. */
function conditioningEmbedding(g: GraphBuilder, cfg: ControlNetConfig, cond: Value, outChannels: number): Value {
  const ch = cfg.conditioningEmbeddingChannels;
  let e = g.silu(conv2d(g, 'controlnet_cond_embedding.conv_in', cond, ch[0]!, 3, { pad: 1 }));
  for (let i = 0; i < ch.length - 1; i++) {
    e = g.silu(conv2d(g, `controlnet_cond_embedding.blocks.${2 * i}`, e, ch[i]!, 3, { pad: 1 }));
    e = g.silu(conv2d(g, `controlnet_cond_embedding.blocks.${2 * i + 1}`, e, ch[i + 1]!, 3, { pad: 1, stride: 2 }));
  }
  return conv2d(g, 'controlnet_cond_embedding.conv_out', e, outChannels, 3, { pad: 1 });
}

/**
 * The ControlNet graph for one input shape. Inputs: sample, timestep [B], encoder_hidden_states,
 * controlnet_cond [B, C, H·s, W·s] in [0, 1], conditioning_scale [residuals] (+ SDXL's
 * text_embeds, time_ids, + the variant's). Outputs down_block_res_sample_0… and
 * mid_block_res_sample, each scaled. With `shape.shallow` (a DeepCache cache point) only the
 * down path above it runs: the residuals of the skips the U-Net's shallow graph has, no mid one.
 */
export function buildControlNetGraph(cfg: ControlNetConfig, weights: WeightSource | undefined, shape: ControlNetShape, variant: AttentionVariant, opts: GraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder('controlnet', weights, undefined, opts);
  const { batch: b, height: h, width: w } = shape;
  const s = controlImageScale(cfg);
  const sample = g.toCompute(g.input('sample', [b, cfg.inChannels, h, w]));
  const temb = timeEmbedding(g, cfg, b);
  const text = g.toCompute(g.input('encoder_hidden_states', [b, shape.textLength, cfg.crossAttentionDim]));
  let cond = g.toCompute(g.input('controlnet_cond', [b, cfg.conditioningChannels, h * s, w * s]));
  const count = downResidualCount(cfg);
  const scales = g.toCompute(g.input(CONDITIONING_SCALE_INPUT, [count + 1]));
  if (cfg.channelOrder === 'bgr') cond = g.gather(cond, 1, Array.from({ length: cfg.conditioningChannels }, (_, i) => cfg.conditioningChannels - 1 - i));

  const c0 = cfg.blockOutChannels[0]!;
  const x = g.add(conv2d(g, 'conv_in', sample, c0, 3, { pad: 1 }), conditioningEmbedding(g, cfg, cond, c0));
  const tx = transformerAt(g, cfg, text, variant, [h, w], controlNetAttentionLevels(cfg));
  const samples = downBlocks(g, cfg, x, temb, tx, shape.shallow);

  const residual = (key: string, y: Value, i: number, name: string): void => {
    let r = g.mul(conv2d(g, key, y, y.dim(1), 1), g.slice(scales, 0, i, i + 1));
    if (cfg.globalPoolConditions) {
      const mean = g.op('ReduceMean', [r], { axes: { ints: [2, 3] }, keepdims: { i: 1 } }, [r.dim(0), r.dim(1), 1, 1]);
      r = g.op('Expand', [mean, g.constInt64(r.shape)], {}, r.shape);
    }
    g.output(r, name);
  };
  samples.forEach((y, i) => residual(`controlnet_down_blocks.${i}`, y, i, `down_block_res_sample_${i}`));
  if (!shape.shallow) residual('controlnet_mid_block', midBlock(g, cfg, samples[samples.length - 1]!, temb, tx), count, 'mid_block_res_sample');
  return g;
}

export interface ControlNetLoadOptions extends RuntimeOptions {
  attention?: AttentionOptions;
  /**
   * The U-Net it will run with: a single file's head counts and SDXL time-id width come from
   * it when no `.yaml` beside the file says them.
   */
  base?: UNetConfig;
}

export interface ControlNetForwardOptions {
  /**
   * diffusers' `conditioning_scale` (default 1), or one scale per residual (down ones, then the
   * mid one), as A1111's soft injection weights them.
   */
  conditioningScale?: number | readonly number[];
  /** diffusers' guess mode: residuals scaled by logspace(-1, 0) · conditioningScale. */
  guessMode?: boolean;
  /** With ToDo's `stopAt`: false runs this step with dense attention. Default true. */
  attentionActive?: boolean;
  /** SDXL (text_time): the pooled text embedding [B, P] and time ids [B, 6], as for the U-Net. */
  textEmbeds?: Tensor;
  timeIds?: Tensor;
}

/** A ControlNet's residuals: one per skip connection of the U-Net, and its mid block's. */
export interface ControlNetOutput extends ControlResiduals {
  mid: Tensor;
}

/** Plans a ControlNet keeps: DeepCache's whole and shallow graphs at two batch sizes (NGMS). */
const PLANS_KEPT = 4;

export class ControlNet extends AttentionComponent {
  private readonly plans = new PlanCache<{ graph: GraphDef; variant: AttentionVariant }>(PLANS_KEPT);

  private constructor(
    readonly config: ControlNetConfig,
    /** The folder or file it was loaded from. */
    readonly path: string,
    resolved: ResolvedAttention,
    rt: ComponentRuntime,
  ) {
    super(resolved, rt);
  }

  /** A1111's model name: the file name without its extension, or the folder's name. */
  get name(): string {
    return controlNetName(this.path);
  }

  /**
   * `source`: a diffusers ControlNet folder (config.json + diffusion_pytorch_model.safetensors,
   * or a pipeline folder holding controlnet/), its weights file, or a single `.safetensors`
   * file as A1111 users have them (original ControlNet layout `control_model.*`, or diffusers
   * names without a config).
   */
  static async load(source: string, opts: ControlNetLoadOptions = {}): Promise<ControlNet> {
    const path = resolve(source);
    const comp = openControlNetSource(path, opts.base);
    const cfg = parseControlNetConfig(comp.config);
    // Built once at a small size, so that missing or mis-shaped weights fail at load time.
    const probe = 2 ** (cfg.blockOutChannels.length - 1);
    buildControlNetGraph(cfg, comp.weights, { batch: 1, height: probe, width: probe, textLength: 1 }, denseAttention);
    const attention = resolveAttention(opts.attention ?? { method: 'dense' });
    return new ControlNet(cfg, path, attention, new ComponentRuntime('controlnet', comp.weights, comp.config, await resolveRuntime(opts)));
  }

  private plan(shape: ControlNetShape): { graph: GraphDef; variant: AttentionVariant } {
    return this.plans.get(JSON.stringify({ shape, attention: this.resolved.options }), () => {
      const variant = this.resolved.variant({ latent: [shape.height, shape.width] });
      return { graph: buildControlNetGraph(this.config, this.rt.weights, shape, variant, this.rt.graph).build(), variant };
    });
  }

  /** Sessions kept open: more than one where a pass alternates graphs (DeepCache's shallow steps, NGMS's batch sizes). */
  keepSessions(slots: number): Promise<void> {
    return this.rt.keepSessions(slots);
  }

  /** The residuals for `sample` [B, C, H, W] at `timestep`, conditioned on text [B, L, D] and the control image [B, 3, H·s, W·s] in [0, 1]. */
  async forward(sample: Tensor, timestep: number, encoderHiddenStates: Tensor, controlnetCond: Tensor, opts: ControlNetForwardOptions = {}): Promise<ControlNetOutput> {
    const out = await this.run(sample, timestep, encoderHiddenStates, controlnetCond, opts);
    return { down: out.down, mid: out.mid! };
  }

  /**
   * DeepCache's shallow step: only the down path above the cache point `shallow` runs, giving the
   * residuals of the skips the U-Net's shallow graph has (no mid one); equal to forward()'s first ones.
   */
  forwardShallow(sample: Tensor, timestep: number, encoderHiddenStates: Tensor, controlnetCond: Tensor, shallow: CachePoint, opts: ControlNetForwardOptions = {}): Promise<ControlResiduals> {
    checkCachePoint(this.config, shallow);
    return this.run(sample, timestep, encoderHiddenStates, controlnetCond, opts, shallow);
  }

  private async run(sample: Tensor, timestep: number, encoderHiddenStates: Tensor, controlnetCond: Tensor, opts: ControlNetForwardOptions, shallow?: CachePoint): Promise<ControlResiduals> {
    const c = this.config;
    const s = controlImageScale(c);
    checkInput('controlnet', 'sample', sample, [null, c.inChannels, null, null], 'batch, latent channels, height/8, width/8');
    const [b, , h, w] = sample.dims as [number, number, number, number];
    checkInput('controlnet', 'encoder_hidden_states', encoderHiddenStates, [b, null, c.crossAttentionDim], 'same batch as sample, tokens, cross_attention_dim');
    checkInput('controlnet', 'controlnet_cond', controlnetCond, [b, c.conditioningChannels, h * s, w * s], `same batch as sample, channels, ${s}x the latent size`);
    if (!Number.isFinite(timestep)) throw new UserError(`controlnet: timestep must be a finite number; got ${timestep}`);
    const count = downResidualCount(c) + 1;
    const scale = opts.conditioningScale ?? 1;
    const scales = typeof scale === 'number' ? conditioningScales(c, scale, opts.guessMode ?? c.globalPoolConditions) : [...scale];
    if (scales.length !== count || !scales.every(Number.isFinite)) throw new UserError(`controlnet: conditioningScale must be a number or ${count} finite numbers (one per residual); got ${JSON.stringify(scale)}`);
    const shape: ControlNetShape = { batch: b, height: h, width: w, textLength: encoderHiddenStates.dims[1]!, ...(shallow && { shallow }) };
    const plan = this.plan(shape);
    const feeds: Feed[] = [
      { name: 'sample', type: 'float32', value: sample },
      { name: 'timestep', type: 'float32', value: { data: new Float32Array(b).fill(timestep), dims: [b] } },
      { name: 'encoder_hidden_states', type: 'float32', value: encoderHiddenStates },
      { name: 'controlnet_cond', type: 'float32', value: controlnetCond },
      { name: CONDITIONING_SCALE_INPUT, type: 'float32', value: { data: Float32Array.from(scales), dims: [count] } },
      ...this.textTimeFeeds(b, opts),
      ...plan.variant.feeds({ active: opts.attentionActive !== false }),
    ];
    const out = await this.rt.run({ shape, attention: this.resolved.options }, () => plan.graph, feeds);
    const tensor = (name: string): Tensor => ({ data: out[name]!.data as Float32Array, dims: [...out[name]!.dims] });
    if (shallow) return { down: Array.from({ length: shallowSkipCount(c, shallow) }, (_, i) => tensor(`down_block_res_sample_${i}`)) };
    return { down: Array.from({ length: count - 1 }, (_, i) => tensor(`down_block_res_sample_${i}`)), mid: tensor('mid_block_res_sample') };
  }

  private textTimeFeeds(b: number, opts: ControlNetForwardOptions): Feed[] {
    const tt = this.config.textTime;
    if (!tt) return [];
    if (!opts.textEmbeds || !opts.timeIds) throw new UserError(`controlnet: this is an SDXL ControlNet (text_time): pass textEmbeds [${b}, ${tt.textEmbedDim}] and timeIds [${b}, ${TIME_IDS}], as for the U-Net`);
    checkInput('controlnet', 'textEmbeds', opts.textEmbeds, [b, tt.textEmbedDim], 'batch, pooled text width');
    checkInput('controlnet', 'timeIds', opts.timeIds, [b, TIME_IDS], 'batch, original h/w + crop top/left + target h/w');
    return [
      { name: 'text_embeds', type: 'float32', value: opts.textEmbeds },
      { name: 'time_ids', type: 'float32', value: opts.timeIds },
    ];
  }

}

/** Config and weights: a diffusers folder or weights file beside its config.json, else a single file read by its tensor names. */
export function openControlNetSource(path: string, base: UNetConfig | undefined): ComponentSource {
  if (isSingleFile(path) && !existsSync(join(dirname(path), 'config.json'))) {
    const hints: ControlNetHints = base ? { heads: base.heads, additionTimeEmbedDim: base.textTime?.timeEmbedDim, textTime: base.textTime !== null } : {};
    return openControlNetFile(path, hints);
  }
  return openComponent(path, 'controlnet', ['ControlNetModel']);
}

export function loadControlNet(source: string, opts: ControlNetLoadOptions = {}): Promise<ControlNet> {
  return ControlNet.load(source, opts);
}
