/** torch.nn building blocks over diffusers weight keys (`<key>.weight`, `<key>.bias`). */
import type { GraphBuilder, Value } from '../graph/builder.js';

/** nn.Linear on the last axis. */
export function linear(g: GraphBuilder, key: string, x: Value, outFeatures: number, bias = true): Value {
  const y = g.matmul(x, g.linearWeight(`${key}.weight`, outFeatures, x.dim(-1)));
  return bias ? g.add(y, g.weight(`${key}.bias`, [outFeatures])) : y;
}

/**
 * Output features [from, to) of an nn.Linear of `outFeatures`, as a product of its own: the
 * halves of a gated projection computed apart instead of sliced out of one wide output (which
 * copies it once more).
 */
export function linearRows(g: GraphBuilder, key: string, x: Value, outFeatures: number, from: number, to: number): Value {
  const y = g.matmul(x, g.linearWeight(`${key}.weight`, outFeatures, x.dim(-1), [from, to]));
  return g.add(y, g.slice(g.weight(`${key}.bias`, [outFeatures]), 0, from, to));
}

/** nn.Conv2d, square kernel; `bias: false` for a Conv2d made with bias=False. */
export function conv2d(
  g: GraphBuilder,
  key: string,
  x: Value,
  outChannels: number,
  kernel: number,
  opts: { stride?: number; pad?: number; bias?: boolean } = {},
): Value {
  const w = g.weight(`${key}.weight`, [outChannels, x.dim(1), kernel, kernel]);
  const b = opts.bias === false ? null : g.weight(`${key}.bias`, [outChannels]);
  return g.conv(x, w, b, { stride: opts.stride, pad: opts.pad });
}

/** nn.GroupNorm on NCHW (or [B, C, N]) input: InstanceNormalization over the groups, then the per-channel affine part. */
export function groupNorm(g: GraphBuilder, key: string, x: Value, groups: number, eps: number): Value {
  const [b, c] = x.shape as [number, number];
  if (c % groups !== 0) throw new Error(`${key}: ${c} channels do not split into ${groups} groups`);
  const rest = x.shape.slice(2);
  const grouped = g.reshape(x, [b, groups, (c / groups) * rest.reduce((p, d) => p * d, 1)]);
  const normed = g.reshape(g.instanceNorm(grouped, eps), x.shape);
  return g.channelAffine(normed, g.weight(`${key}.weight`, [c]), g.weight(`${key}.bias`, [c]));
}

/** nn.LayerNorm over the last axis. */
export function layerNorm(g: GraphBuilder, key: string, x: Value, eps: number): Value {
  const c = x.dim(-1);
  return g.layerNorm(x, g.weight(`${key}.weight`, [c]), g.weight(`${key}.bias`, [c]), eps);
}

/** [B, C, H, W] → [B, H·W, C] */
export function toTokens(g: GraphBuilder, x: Value): Value {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  return g.reshape(g.transpose(x, [0, 2, 3, 1]), [b, h * w, c]);
}

/** [B, H·W, C] → [B, C, H, W] */
export function fromTokens(g: GraphBuilder, x: Value, h: number, w: number): Value {
  const [b, , c] = x.shape as [number, number, number];
  return g.transpose(g.reshape(x, [b, h, w, c]), [0, 3, 1, 2]);
}

/** F.interpolate(x, size, mode='nearest') on NCHW: source index = floor(dst · in / out). */
export function interpolateNearest(g: GraphBuilder, x: Value, size: readonly [number, number]): Value {
  return g.resize(x, size, { mode: { s: 'nearest' }, coordinate_transformation_mode: { s: 'asymmetric' }, nearest_mode: { s: 'floor' } });
}

/** nn.PixelShuffle(r): [B, C·r², H, W] → [B, C, H·r, W·r] (ONNX DepthToSpace in CRD order is the same permutation). */
export function pixelShuffle(g: GraphBuilder, x: Value, r: number): Value {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  if (c % (r * r)) throw new Error(`pixel shuffle by ${r}: ${c} channels are not a multiple of ${r * r}`);
  return g.op('DepthToSpace', [x], { blocksize: { i: r }, mode: { s: 'CRD' } }, [b, c / (r * r), h * r, w * r]);
}

/** F.pixel_unshuffle(x, r): [B, C, H, W] → [B, C·r², H/r, W/r], channel c·r² + i·r + j holding pixel (i, j) of each r×r cell. */
export function pixelUnshuffle(g: GraphBuilder, x: Value, r: number): Value {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  if (h % r || w % r) throw new Error(`pixel unshuffle by ${r}: ${h}x${w} is not a multiple of ${r}`);
  const cells = g.reshape(x, [b, c, h / r, r, w / r, r]);
  return g.reshape(g.transpose(cells, [0, 1, 3, 5, 2, 4]), [b, c * r * r, h / r, w / r]);
}
