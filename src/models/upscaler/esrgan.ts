/**
 * ESRGAN's RRDBNet, as BasicSR defines it (basicsr/archs/rrdbnet_arch.py) and Real-ESRGAN uses
 * it: conv_first → `nb` residual-in-residual dense blocks → conv_body (+ the skip) → per 2x
 * step a nearest upsample, conv_up and LeakyReLU(0.2) → conv_hr, LeakyReLU → conv_last.
 * Real-ESRGAN's x2 / x1 models put a pixel unshuffle (by 2 / 4) in front.
 *
 * Three key layouts name the same weights, and all are read as BasicSR's names: BasicSR's own
 * (`conv_first`, `body.N.rdb1.conv1`, `conv_body`, `conv_up1`, `conv_hr`, `conv_last`), the
 * original 2018 ESRGAN's sequential model (`model.0`, `model.1.sub.N.RDB1.conv1.0`,
 * `model.1.sub.<nb>`, `model.3`, `model.6`, …, as AUTOMATIC1111 and spandrel read it), and
 * BSRGAN / RealSR's (`RRDB_trunk.N.RDB1.conv1`, `trunk_conv`, `upconv1`, `HRconv`). The
 * configuration (features, blocks, growth channels, 2x steps, unshuffle) comes from the shapes.
 */
import type { GraphBuilder, Value } from '../../graph/builder.js';
import type { CheckpointSlot } from '../single-file/weights.js';
import type { TensorInfo } from '../../io/tensor-file.js';
import { conv2d, interpolateNearest, pixelUnshuffle } from '../layers.js';
import { UserError } from '../../errors.js';

export interface EsrganConfig {
  architecture: 'ESRGAN';
  inChannels: number;
  outChannels: number;
  /** nf: channels of the trunk. */
  features: number;
  /** nb: residual-in-residual dense blocks. */
  blocks: number;
  /** gc: channels each dense layer adds. */
  growth: number;
  /** Nearest 2x upsampling steps (conv_up1 … conv_upN). */
  upsamples: number;
  /** Pixel unshuffle factor in front (Real-ESRGAN x2: 2, x1: 4), else 1. */
  unshuffle: number;
  /** Output pixels per input pixel: 2^upsamples / unshuffle. */
  scale: number;
}

type Tensors = ReadonlyMap<string, TensorInfo>;

/** Which layout the keys are in, or undefined for none of ESRGAN's. */
export function esrganLayout(keys: Tensors): 'basicsr' | 'original' | 'bsrgan' | undefined {
  if (keys.has('conv_first.weight') && keys.has('body.0.rdb1.conv1.weight')) return 'basicsr';
  if (keys.has('conv_first.weight') && keys.has('RRDB_trunk.0.RDB1.conv1.weight')) return 'bsrgan';
  if (keys.has('model.0.weight') && keys.has('model.1.sub.0.RDB1.conv1.0.weight')) return 'original';
  if (keys.has('model.0.weight') && keys.has('model.1.sub.0.RDB1.conv1x1.weight')) {
    throw new UserError('this is an ESRGAN+ model (dense blocks with extra 1x1 convolutions and noise), which todo-sd does not implement; use an ESRGAN or Real-ESRGAN model');
  }
  return undefined;
}

/** Indices N of keys `prefix<N>suffix`, ascending. */
function indices(keys: Tensors, prefix: string, suffix: string): number[] {
  const out: number[] = [];
  for (const k of keys.keys()) {
    if (!k.startsWith(prefix) || !k.endsWith(suffix)) continue;
    const n = k.slice(prefix.length, k.length - suffix.length);
    if (/^\d+$/.test(n)) out.push(Number(n));
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

/** BasicSR's name of every weight → where it is in the file, and the configuration the shapes give. */
export function esrganModel(keys: Tensors, layout: 'basicsr' | 'original' | 'bsrgan'): { config: EsrganConfig; slots: Map<string, CheckpointSlot> } {
  const slots = new Map<string, CheckpointSlot>();
  const map = (ours: string, theirs: string): void => {
    for (const p of ['weight', 'bias']) slots.set(`${ours}.${p}`, { key: `${theirs}.${p}` });
  };
  let blocks: number;
  let upsamples: number;
  if (layout === 'original') {
    blocks = indices(keys, 'model.1.sub.', '.RDB1.conv1.0.weight').length;
    // model.0 conv_first, model.1 the trunk, then per 2x step (upsample, conv, lrelu), then conv_hr, lrelu, conv_last.
    const layers = indices(keys, 'model.', '.weight').filter((n) => n > 1);
    upsamples = Math.max(0, layers.length - 2);
    const want = [...Array.from({ length: upsamples }, (_, i) => 3 * (i + 1)), 3 * upsamples + 2, 3 * upsamples + 4];
    if (want.join() !== layers.join()) {
      throw new UserError(`an original-layout ESRGAN model whose layers are model.{${layers.join(', ')}}; ESRGAN with nearest-upsample steps has model.{3, 6, …, 3N, 3N+2, 3N+4}`);
    }
    map('conv_first', 'model.0');
    map('conv_body', `model.1.sub.${blocks}`);
    for (let n = 1; n <= upsamples; n++) map(`conv_up${n}`, `model.${3 * n}`);
    map('conv_hr', `model.${3 * upsamples + 2}`);
    map('conv_last', `model.${3 * upsamples + 4}`);
  } else {
    const trunk = layout === 'basicsr' ? 'body.' : 'RRDB_trunk.';
    blocks = indices(keys, trunk, layout === 'basicsr' ? '.rdb1.conv1.weight' : '.RDB1.conv1.weight').length;
    const up = layout === 'basicsr' ? 'conv_up' : 'upconv';
    upsamples = indices(keys, up, '.weight').length;
    map('conv_first', 'conv_first');
    map('conv_body', layout === 'basicsr' ? 'conv_body' : 'trunk_conv');
    for (let n = 1; n <= upsamples; n++) map(`conv_up${n}`, `${up}${n}`);
    map('conv_hr', layout === 'basicsr' ? 'conv_hr' : 'HRconv');
    map('conv_last', 'conv_last');
  }
  for (let i = 0; i < blocks; i++) {
    for (let r = 1; r <= 3; r++) {
      for (let c = 1; c <= 5; c++) {
        const theirs = layout === 'basicsr' ? `body.${i}.rdb${r}.conv${c}` : layout === 'bsrgan' ? `RRDB_trunk.${i}.RDB${r}.conv${c}` : `model.1.sub.${i}.RDB${r}.conv${c}.0`;
        map(`body.${i}.rdb${r}.conv${c}`, theirs);
      }
    }
  }
  const shape = (ours: string): number[] => {
    const t = keys.get(slots.get(`${ours}.weight`)!.key);
    if (!t) throw new UserError(`the ESRGAN model has no ${slots.get(`${ours}.weight`)!.key}; the file is incomplete`);
    return t.shape;
  };
  const [features, inChannels] = shape('conv_first') as [number, number];
  const outChannels = shape('conv_last')[0]!;
  const growth = shape('body.0.rdb1.conv1')[0]!;
  // Real-ESRGAN x2 / x1: the input is pixel-unshuffled, so conv_first sees 4x / 16x the channels.
  const unshuffle = inChannels === outChannels * 4 ? 2 : inChannels === outChannels * 16 ? 4 : 1;
  if (upsamples < 1 || upsamples > 4) throw new UserError(`an ESRGAN model with ${upsamples} upsampling steps; todo-sd reads 1 to 4 (2x to 16x)`);
  const config: EsrganConfig = { architecture: 'ESRGAN', inChannels: inChannels / (unshuffle * unshuffle), outChannels, features, blocks, growth, upsamples, unshuffle, scale: 2 ** upsamples / unshuffle };
  return { config, slots };
}

const lrelu = (g: GraphBuilder, x: Value): Value => g.leakyRelu(x, 0.2);
const conv = (g: GraphBuilder, key: string, x: Value, out: number): Value => conv2d(g, key, x, out, 3, { pad: 1 });

/** ResidualDenseBlock: five 3x3 convs, each seeing the input and every earlier output; 0.2 · out + x. */
function denseBlock(g: GraphBuilder, key: string, x: Value, cfg: EsrganConfig): Value {
  const outs = [x];
  for (let c = 1; c <= 4; c++) outs.push(lrelu(g, conv(g, `${key}.conv${c}`, g.concat(outs, 1), cfg.growth)));
  return g.add(g.mul(conv(g, `${key}.conv5`, g.concat(outs, 1), cfg.features), 0.2), x);
}

/** image [1, in, H, W] in [0, 1] → [1, out, H·scale, W·scale]; H and W multiples of the unshuffle factor. */
export function buildEsrganGraph(g: GraphBuilder, image: Value, cfg: EsrganConfig): Value {
  let feat = conv(g, 'conv_first', cfg.unshuffle > 1 ? pixelUnshuffle(g, image, cfg.unshuffle) : image, cfg.features);
  let trunk = feat;
  for (let i = 0; i < cfg.blocks; i++) {
    const input = trunk;
    trunk = g.scoped(`body.${i}`, () => {
      let t = input;
      for (let r = 1; r <= 3; r++) t = denseBlock(g, `body.${i}.rdb${r}`, t, cfg);
      return g.add(g.mul(t, 0.2), input);
    });
  }
  feat = g.add(feat, conv(g, 'conv_body', trunk, cfg.features));
  for (let n = 1; n <= cfg.upsamples; n++) {
    feat = lrelu(g, conv(g, `conv_up${n}`, interpolateNearest(g, feat, [feat.dim(2) * 2, feat.dim(3) * 2]), cfg.features));
  }
  return conv(g, 'conv_last', lrelu(g, conv(g, 'conv_hr', feat, cfg.features)), cfg.outChannels);
}
