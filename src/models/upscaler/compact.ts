/**
 * Real-ESRGAN's SRVGGNetCompact (realesrgan/archs/srvgg_arch.py): a plain stack of 3x3 convs
 * with PReLU at the input resolution (`body.0` conv, `body.1` PReLU, …, `body.<2n+2>` the last
 * conv, whose out·scale² channels a pixel shuffle turns into the image), plus the input
 * upsampled (nearest) as a residual base. The number of convs, features and the scale come from
 * the shapes, as spandrel reads them.
 */
import type { GraphBuilder, Value } from '../../graph/builder.js';
import type { TensorInfo } from '../../io/tensor-file.js';
import { conv2d, interpolateNearest, pixelShuffle } from '../layers.js';
import { UserError } from '../../errors.js';

export interface CompactConfig {
  architecture: 'SRVGGNetCompact';
  inChannels: number;
  outChannels: number;
  features: number;
  /** Convs between the first and the last. */
  convs: number;
  scale: number;
}

type Tensors = ReadonlyMap<string, TensorInfo>;

/** True when the keys are SRVGGNetCompact's (a conv, then a PReLU's 1-D weight). */
export function isCompact(keys: Tensors): boolean {
  return keys.get('body.0.weight')?.shape.length === 4 && keys.get('body.1.weight')?.shape.length === 1;
}

export function compactConfig(keys: Tensors): CompactConfig {
  let last = 0;
  while (keys.has(`body.${last + 2}.weight`)) last += 2;
  const [features, inChannels] = keys.get('body.0.weight')!.shape as [number, number];
  const lastOut = keys.get(`body.${last}.weight`)!.shape[0]!;
  // The residual base is the input, so the output has the input's channels.
  const scale = Math.round(Math.sqrt(lastOut / inChannels));
  if (last < 2 || scale * scale * inChannels !== lastOut) {
    throw new UserError(`an SRVGGNetCompact model whose last conv (body.${last}) has ${lastOut} outputs, not ${inChannels} channels × a square scale; the file is not a Real-ESRGAN compact model`);
  }
  return { architecture: 'SRVGGNetCompact', inChannels, outChannels: inChannels, features, convs: last / 2 - 1, scale };
}

/** image [1, in, H, W] in [0, 1] → [1, in, H·scale, W·scale]. */
export function buildCompactGraph(g: GraphBuilder, image: Value, cfg: CompactConfig): Value {
  let x = image;
  for (let i = 0; i <= cfg.convs; i++) {
    x = conv2d(g, `body.${2 * i}`, x, cfg.features, 3, { pad: 1 });
    x = g.prelu(x, g.reshape(g.weight(`body.${2 * i + 1}.weight`, [cfg.features]), [cfg.features, 1, 1]));
  }
  const last = conv2d(g, `body.${2 * cfg.convs + 2}`, x, cfg.outChannels * cfg.scale * cfg.scale, 3, { pad: 1 });
  const [, , h, w] = image.shape as [number, number, number, number];
  return g.add(pixelShuffle(g, last, cfg.scale), interpolateNearest(g, image, [h * cfg.scale, w * cfg.scale]));
}
