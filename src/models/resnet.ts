/** diffusers' ResnetBlock2D, Downsample2D and Upsample2D, their nodes named under their module's key. */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { conv2d, groupNorm, interpolateNearest, linear } from './layers.js';

export interface ResnetOptions {
  groups: number;
  eps: number;
  outputScaleFactor?: number;
}

/** `temb` is the already-activated time embedding [B, T], or null (VAE). */
export function resnetBlock2D(g: GraphBuilder, key: string, x: Value, temb: Value | null, outChannels: number, o: ResnetOptions): Value {
  return g.scoped(key, () => {
    let h = g.silu(groupNorm(g, `${key}.norm1`, x, o.groups, o.eps));
    h = conv2d(g, `${key}.conv1`, h, outChannels, 3, { pad: 1 });
    if (temb) {
      const t = linear(g, `${key}.time_emb_proj`, temb, outChannels);
      h = g.add(h, g.reshape(t, [t.dim(0), outChannels, 1, 1]));
    }
    h = g.silu(groupNorm(g, `${key}.norm2`, h, o.groups, o.eps));
    h = conv2d(g, `${key}.conv2`, h, outChannels, 3, { pad: 1 });
    const shortcut = x.dim(1) !== outChannels ? conv2d(g, `${key}.conv_shortcut`, x, outChannels, 1) : x;
    const out = g.add(shortcut, h);
    return o.outputScaleFactor && o.outputScaleFactor !== 1 ? g.div(out, o.outputScaleFactor) : out;
  });
}

/** Strided 3x3 convolution. `pad` 1 in SD's U-Net; 0 with asymmetric (0, 1, 0, 1) padding in the VAE. */
export function downsample2D(g: GraphBuilder, key: string, x: Value, padding: number): Value {
  const c = x.dim(1);
  return g.scoped(key, () => {
    if (padding !== 0) return conv2d(g, `${key}.conv`, x, c, 3, { stride: 2, pad: padding });
    const [b, , h, w] = x.shape as [number, number, number, number];
    const zeros = g.constInt64([0, 0, 0, 0, 0, 0, 1, 1]);
    const padded = g.op('Pad', [x, zeros], {}, [b, c, h + 1, w + 1]);
    return conv2d(g, `${key}.conv`, padded, c, 3, { stride: 2 });
  });
}

/** Nearest-neighbour 2x (or to an explicit size, to meet an odd-sized skip connection), then a 3x3 conv. */
export function upsample2D(g: GraphBuilder, key: string, x: Value, size?: readonly [number, number]): Value {
  return g.scoped(key, () => conv2d(g, `${key}.conv`, interpolateNearest(g, x, size ?? [x.dim(2) * 2, x.dim(3) * 2]), x.dim(1), 3, { pad: 1 }));
}
