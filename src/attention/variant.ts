/**
 * The one seam through which an attention method changes the U-Net. A transformer block hands
 * each of its sub-layers (self-attention, cross-attention, feed-forward) to the variant together
 * with a function that computes the sub-layer; the variant decides which tokens go in as
 * queries and as keys/values, and how the output returns to the full token grid.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { Feed } from '../runtime/session.js';

export type SubLayer = 'attn1' | 'attn2' | 'ff';

/** Computes a sub-layer: `query` tokens in, as many tokens out; `keyValue` feeds attn1's keys and values. */
export type SubLayerFn = (g: GraphBuilder, query: Value, keyValue: Value) => Value;

export interface BlockContext {
  /** Weight prefix of the block, e.g. `down_blocks.0.attentions.1.transformer_blocks.0`. */
  key: string;
  /** 0 at the U-Net's full latent resolution, 1 after one downsampling, … */
  level: number;
  /** 0 at the highest-resolution level that has self-attention, 1 at the next such level, … */
  attentionLevel: number;
  /** The block's token grid [h, w]; tokens are row-major over it. */
  grid: readonly [number, number];
  /** The latent grid [h, w] at level 0. */
  latent: readonly [number, number];
}

/** What a denoising step tells the variant. */
export interface StepState {
  /** False on the steps where a scheduled method (ToDo's stopAt) should fall back to dense. */
  active: boolean;
}

export interface BlockTokens {
  /** `x` is the normed input of the sub-layer, [B, N, C]; returns its output, [B, N, C']. */
  apply(g: GraphBuilder, layer: SubLayer, x: Value, fn: SubLayerFn): Value;
}

/**
 * One instance serves one graph build. `forBlock` is called once per BasicTransformerBlock, in
 * forward order, on the top-level graph, with the block's input tokens (ToMe's similarity
 * metric); it may add graph inputs (`g.input`), whose values `feeds` gives for each run.
 */
export interface AttentionVariant {
  forBlock(g: GraphBuilder, hidden: Value, ctx: BlockContext): BlockTokens;
  feeds(step: StepState): Feed[];
}

/** Every sub-layer sees all tokens: plain exact attention. */
export const IDENTITY_BLOCK: BlockTokens = {
  apply: (g, _layer, x, fn) => fn(g, x, x),
};
