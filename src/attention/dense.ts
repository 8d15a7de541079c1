/** Exact attention over every token: the baseline every other method is measured against. */
import { IDENTITY_BLOCK, type AttentionVariant } from './variant.js';

export const denseAttention: AttentionVariant = {
  forBlock: () => IDENTITY_BLOCK,
  feeds: () => [],
};
