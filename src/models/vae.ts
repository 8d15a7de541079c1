/**
 * diffusers' AutoencoderKL from `vae/config.json`: Decoder (post_quant_conv → decoder) and
 * Encoder (encoder → quant_conv), with diffusers' weight keys.
 */
import { GraphBuilder, type GraphDef, type GraphOptions, type Value } from '../graph/builder.js';
import type { WeightFiles, WeightSource } from '../graph/weights.js';
import { openComponent } from './model-source.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import { resolveRuntime } from '../runtime/provider.js';
import { ComponentRuntime, checkInput } from './component.js';
import { conv2d, fromTokens, groupNorm, linear, toTokens } from './layers.js';
import { downsample2D, resnetBlock2D, upsample2D } from './resnet.js';

export interface VAELoadOptions extends RuntimeOptions {
  /** The latent scaling factor when the VAE's source does not state one (a lone VAE file: the model's). */
  scalingFactor?: number;
}

export interface VAEConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  groups: number;
  scalingFactor: number;
  /** Image pixels per latent pixel: 2^(levels − 1). */
  scale: number;
  /** diffusers' force_upcast: decode in fp32 even in an fp16 pipeline (SD's VAE overflows fp16). */
  forceUpcast: boolean;
}

export function parseVAEConfig(c: Record<string, unknown>): VAEConfig {
  const boc = c.block_out_channels as number[] | undefined;
  if (!Array.isArray(boc) || boc.length === 0) throw new Error('vae config: block_out_channels is missing');
  for (const [k, known] of [
    ['down_block_types', 'DownEncoderBlock2D'],
    ['up_block_types', 'UpDecoderBlock2D'],
  ] as const) {
    const list = (c[k] as string[] | undefined) ?? Array(boc.length).fill(known);
    if (list.length !== boc.length) throw new Error(`vae config: ${k} has ${list.length} entries for ${boc.length} block_out_channels`);
    for (const t of list) if (t !== known) throw new Error(`vae config: unknown block type "${t}" in ${k}; supported: ${known}`);
  }
  return {
    inChannels: (c.in_channels as number | undefined) ?? 3,
    outChannels: (c.out_channels as number | undefined) ?? 3,
    latentChannels: (c.latent_channels as number | undefined) ?? 4,
    blockOutChannels: boc,
    layersPerBlock: (c.layers_per_block as number | undefined) ?? 1,
    groups: (c.norm_num_groups as number | undefined) ?? 32,
    // SD 1.x/2.x 0.18215, SDXL 0.13025. SDXL's `force_upcast` asks for fp32 decoding (forceUpcast below).
    scalingFactor: (c.scaling_factor as number | undefined) ?? 0.18215,
    scale: 2 ** (boc.length - 1),
    forceUpcast: (c.force_upcast as boolean | undefined) ?? true,
  };
}

const EPS = 1e-6;

/** The VAE's single-head self-attention with a GroupNorm in front and a residual around it. */
function vaeAttention(g: GraphBuilder, key: string, x: Value, groups: number): Value {
  const [, c, h, w] = x.shape as [number, number, number, number];
  const out = g.scoped(key, () => {
    const tokens = toTokens(g, groupNorm(g, `${key}.group_norm`, x, groups, EPS));
    const q = linear(g, `${key}.to_q`, tokens, c);
    const k = linear(g, `${key}.to_k`, tokens, c);
    const v = linear(g, `${key}.to_v`, tokens, c);
    return linear(g, `${key}.to_out.0`, g.multiHeadAttention(q, k, v, 1), c);
  });
  return g.add(fromTokens(g, out, h, w), x);
}

function midBlock(g: GraphBuilder, key: string, x: Value, cfg: VAEConfig): Value {
  const c = x.dim(1);
  const o = { groups: cfg.groups, eps: EPS };
  x = resnetBlock2D(g, `${key}.resnets.0`, x, null, c, o);
  x = vaeAttention(g, `${key}.attentions.0`, x, cfg.groups);
  return resnetBlock2D(g, `${key}.resnets.1`, x, null, c, o);
}

function head(g: GraphBuilder, key: string, x: Value, cfg: VAEConfig, out: number): Value {
  return conv2d(g, `${key}.conv_out`, g.silu(groupNorm(g, `${key}.conv_norm_out`, x, cfg.groups, EPS)), out, 3, { pad: 1 });
}

/** latents [B, latent, h, w] → image [B, 3, h·scale, w·scale] in [-1, 1] (no scaling factor applied). */
export function buildDecoderGraph(cfg: VAEConfig, weights: WeightSource | undefined, shape: { batch: number; height: number; width: number }, opts: GraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder('vae_decoder', weights, undefined, opts);
  const z = g.toCompute(g.input('latents', [shape.batch, cfg.latentChannels, shape.height, shape.width]));
  let x = conv2d(g, 'post_quant_conv', z, cfg.latentChannels, 1);
  const rev = [...cfg.blockOutChannels].reverse();
  x = conv2d(g, 'decoder.conv_in', x, rev[0]!, 3, { pad: 1 });
  x = midBlock(g, 'decoder.mid_block', x, cfg);
  rev.forEach((out, i) => {
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      x = resnetBlock2D(g, `decoder.up_blocks.${i}.resnets.${j}`, x, null, out, { groups: cfg.groups, eps: EPS });
    }
    if (i < rev.length - 1) x = upsample2D(g, `decoder.up_blocks.${i}.upsamplers.0`, x);
  });
  g.output(head(g, 'decoder', x, cfg, cfg.outChannels), 'image');
  return g;
}

/** image [B, 3, H, W] in [-1, 1] → the latent distribution's mean and log-variance [B, latent, H/scale, W/scale]. */
export function buildEncoderGraph(cfg: VAEConfig, weights: WeightSource | undefined, shape: { batch: number; height: number; width: number }, opts: GraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder('vae_encoder', weights, undefined, opts);
  let x = g.toCompute(g.input('image', [shape.batch, cfg.inChannels, shape.height, shape.width]));
  x = conv2d(g, 'encoder.conv_in', x, cfg.blockOutChannels[0]!, 3, { pad: 1 });
  cfg.blockOutChannels.forEach((out, i) => {
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      x = resnetBlock2D(g, `encoder.down_blocks.${i}.resnets.${j}`, x, null, out, { groups: cfg.groups, eps: EPS });
    }
    if (i < cfg.blockOutChannels.length - 1) x = downsample2D(g, `encoder.down_blocks.${i}.downsamplers.0`, x, 0);
  });
  x = midBlock(g, 'encoder.mid_block', x, cfg);
  const moments = conv2d(g, 'quant_conv', head(g, 'encoder', x, cfg, 2 * cfg.latentChannels), 2 * cfg.latentChannels, 1);
  g.output(g.slice(moments, 1, 0, cfg.latentChannels), 'mean');
  g.output(g.slice(moments, 1, cfg.latentChannels, 2 * cfg.latentChannels), 'logvar');
  return g;
}

export class VAE {
  private constructor(
    readonly config: VAEConfig,
    private readonly weights: WeightFiles,
    private readonly decoder: ComponentRuntime,
    private readonly encoder: ComponentRuntime,
  ) {}

  static async load(dir: string, opts: VAELoadOptions = {}): Promise<VAE> {
    const comp = openComponent(dir, 'vae', ['AutoencoderKL']);
    const cfg = parseVAEConfig({ scaling_factor: opts.scalingFactor, ...comp.config });
    const weights = comp.weights;
    // Missing or mis-shaped decoder weights fail here, not at the first decode.
    buildDecoderGraph(cfg, weights, { batch: 1, height: 1, width: 1 });
    const rt = await resolveRuntime(opts);
    return new VAE(
      cfg,
      weights,
      new ComponentRuntime('vae_decoder', weights, comp.config, rt, { fp32Only: cfg.forceUpcast, activationArena: false }),
      new ComponentRuntime('vae_encoder', weights, comp.config, rt, { fp32Only: cfg.forceUpcast, activationArena: false }),
    );
  }

  decoderGraph(shape: { batch: number; height: number; width: number }): GraphDef {
    return buildDecoderGraph(this.config, this.weights, shape, this.decoder.graph).build();
  }

  /** latents [B, C, h, w] → image [B, 3, h·s, w·s], roughly in [-1, 1]. Divide by the scaling factor first. */
  async decode(latents: Tensor): Promise<Tensor> {
    checkInput('vae', 'latents', latents, [null, this.config.latentChannels, null, null], 'batch, latent channels, height, width');
    const [batch, , height, width] = latents.dims as [number, number, number, number];
    const shape = { batch, height, width };
    const out = await this.decoder.run({ shape, part: 'decoder' }, () => this.decoderGraph(shape), [{ name: 'latents', type: 'float32', value: latents }]);
    const t = out.image!;
    return { data: t.data as Float32Array, dims: [...t.dims] };
  }

  /** image [B, 3, H, W] in [-1, 1], H and W multiples of the VAE's scale → the latent mean (unscaled). */
  async encode(image: Tensor): Promise<Tensor> {
    return (await this.encodeDistribution(image)).mean;
  }

  /** The encoder's diagonal Gaussian over the latents: its mean and log-variance, [B, latent, H/scale, W/scale]. */
  async encodeDistribution(image: Tensor): Promise<{ mean: Tensor; logvar: Tensor }> {
    checkInput('vae', 'image', image, [null, this.config.inChannels, null, null], 'batch, channels, height, width');
    const [batch, , height, width] = image.dims as [number, number, number, number];
    if (height % this.config.scale || width % this.config.scale) {
      throw new Error(`vae: image height and width must be multiples of ${this.config.scale}; got ${height}x${width}`);
    }
    const shape = { batch, height, width };
    const out = await this.encoder.run({ shape, part: 'encoder' }, () => buildEncoderGraph(this.config, this.weights, shape, this.encoder.graph).build(), [
      { name: 'image', type: 'float32', value: image },
    ]);
    const t = (name: string): Tensor => ({ data: out[name]!.data as Float32Array, dims: [...out[name]!.dims] });
    return { mean: t('mean'), logvar: t('logvar') };
  }

  async dispose(): Promise<void> {
    await this.decoder.dispose();
    await this.encoder.dispose();
  }
}

export function loadVAE(dir: string, opts: VAELoadOptions = {}): Promise<VAE> {
  return VAE.load(dir, opts);
}
