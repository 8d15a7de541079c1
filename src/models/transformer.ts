/**
 * diffusers' Transformer2DModel (continuous input) with BasicTransformerBlock: self-attention
 * (attn1), cross-attention to the text (attn2), GEGLU feed-forward (ff), each pre-normed with a
 * LayerNorm and added back. The attention variant decides which tokens each sub-layer sees.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { AttentionVariant, BlockContext } from '../attention/variant.js';
import { conv2d, fromTokens, groupNorm, layerNorm, linear, linearRows, toTokens } from './layers.js';

export interface TransformerOptions {
  heads: number;
  layers: number;
  useLinearProjection: boolean;
  groups: number;
  attention: AttentionVariant;
  level: number;
  /** Index of `level` among the levels that have self-attention. */
  attentionLevel: number;
  latent: readonly [number, number];
}

/** diffusers' Attention: to_q / to_k / to_v without bias, to_out.0 with bias; softmax scale 1/√head_dim. */
export function attention(g: GraphBuilder, key: string, query: Value, context: Value, heads: number): Value {
  const width = query.dim(-1);
  const q = linear(g, `${key}.to_q`, query, width, false);
  const k = linear(g, `${key}.to_k`, context, width, false);
  const v = linear(g, `${key}.to_v`, context, width, false);
  return linear(g, `${key}.to_out.0`, g.multiHeadAttention(q, k, v, heads), width);
}

/** GEGLU: proj's (hidden, gate) halves, each its own product → hidden · gelu(gate) → linear. */
function feedForward(g: GraphBuilder, key: string, x: Value): Value {
  const width = x.dim(-1);
  const inner = 4 * width;
  const proj = `${key}.net.0.proj`;
  const gated = g.mul(linearRows(g, proj, x, 2 * inner, 0, inner), g.gelu(linearRows(g, proj, x, 2 * inner, inner, 2 * inner)));
  return linear(g, `${key}.net.2`, gated, width);
}

function basicTransformerBlock(g: GraphBuilder, key: string, x: Value, text: Value, heads: number, ctx: BlockContext, o: TransformerOptions): Value {
  const tokens = g.scoped(key, () => o.attention.forBlock(g, x, ctx));
  const h = g.scoped(`${key}.attn1`, () =>
    g.add(
      x,
      tokens.apply(g, 'attn1', layerNorm(g, `${key}.norm1`, x, 1e-5), (gg, q, kv) => attention(gg, `${key}.attn1`, q, kv, heads)),
    ),
  );
  const h2 = g.scoped(`${key}.attn2`, () => g.add(h, tokens.apply(g, 'attn2', layerNorm(g, `${key}.norm2`, h, 1e-5), (gg, q) => attention(gg, `${key}.attn2`, q, text, heads))));
  return g.scoped(`${key}.ff`, () => g.add(h2, tokens.apply(g, 'ff', layerNorm(g, `${key}.norm3`, h2, 1e-5), (gg, q) => feedForward(gg, `${key}.ff`, q))));
}

export function transformer2D(g: GraphBuilder, key: string, x: Value, text: Value, o: TransformerOptions): Value {
  const [, c, hh, ww] = x.shape as [number, number, number, number];
  const normed = groupNorm(g, `${key}.norm`, x, o.groups, 1e-6);
  let h = o.useLinearProjection ? linear(g, `${key}.proj_in`, toTokens(g, normed), c) : toTokens(g, conv2d(g, `${key}.proj_in`, normed, c, 1));
  for (let i = 0; i < o.layers; i++) {
    const bkey = `${key}.transformer_blocks.${i}`;
    const ctx: BlockContext = { key: bkey, level: o.level, attentionLevel: o.attentionLevel, grid: [hh, ww], latent: o.latent };
    h = basicTransformerBlock(g, bkey, h, text, o.heads, ctx, o);
  }
  const out = o.useLinearProjection ? fromTokens(g, linear(g, `${key}.proj_out`, h, c), hh, ww) : conv2d(g, `${key}.proj_out`, fromTokens(g, h, hh, ww), c, 1);
  return g.add(out, x);
}
