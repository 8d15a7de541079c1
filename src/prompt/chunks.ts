/**
 * AUTOMATIC1111's prompt chunking (modules/sd_hijack_clip.py `tokenize_line`): each emphasis
 * fragment tokenized on its own, tokens filled into chunks of 75 with their fragment's weight,
 * `BREAK` closing a chunk, comma backtracking, each chunk wrapped in start/end tokens and padded.
 */
import { parsePromptAttention } from './attention.js';

/** The tokenizer facts chunking needs; a ClipTokenizer has them all. */
export interface ChunkTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly modelMaxLength: number;
  tokenize(text: string): number[];
}

/** One text-encoder input row: `modelMaxLength` token ids and a weight per token. */
export interface PromptChunk {
  tokens: number[];
  multipliers: number[];
}

/** A1111's `comma_padding_backtrack` default: how far back a comma may pull the chunk end. */
export const COMMA_BACKTRACK = 20;

/**
 * The chunks A1111 feeds to CLIP for `text`. Padding is the end token up to the first end,
 * then the tokenizer's pad token (A1111 does that for SD 2.x, whose pad id differs; for SD 1.x
 * both are 49407). Always at least one chunk.
 */
export function promptChunks(text: string, tokenizer: ChunkTokenizer): PromptChunk[] {
  const chunkLength = tokenizer.modelMaxLength - 2;
  const comma = tokenizer.tokenize(',')[0];
  const chunks: PromptChunk[] = [];
  let tokens: number[] = [];
  let multipliers: number[] = [];
  let lastComma = -1;

  const nextChunk = (): void => {
    const pad = chunkLength - tokens.length;
    chunks.push({
      tokens: [tokenizer.bosId, ...tokens, tokenizer.eosId, ...Array<number>(pad).fill(tokenizer.padId)],
      multipliers: [1, ...multipliers, 1, ...Array<number>(pad).fill(1)],
    });
    tokens = [];
    multipliers = [];
    lastComma = -1;
  };

  for (const [fragment, weight] of parsePromptAttention(text)) {
    if (fragment === 'BREAK' && weight === -1) {
      nextChunk();
      continue;
    }
    for (const token of tokenizer.tokenize(fragment)) {
      if (token === comma) lastComma = tokens.length;
      else if (tokens.length === chunkLength && lastComma !== -1 && tokens.length - lastComma <= COMMA_BACKTRACK) {
        // A full chunk and a comma near its end: what follows the comma moves to the next chunk.
        const keep = lastComma + 1;
        const movedTokens = tokens.slice(keep);
        const movedMultipliers = multipliers.slice(keep);
        tokens = tokens.slice(0, keep);
        multipliers = multipliers.slice(0, keep);
        nextChunk();
        tokens = movedTokens;
        multipliers = movedMultipliers;
      }
      if (tokens.length === chunkLength) nextChunk();
      tokens.push(token);
      multipliers.push(weight);
    }
  }
  if (tokens.length > 0 || chunks.length === 0) nextChunk();
  return chunks;
}

/** A1111's `empty_chunk`: start, end, padding, all weights 1. */
export function emptyChunk(tokenizer: ChunkTokenizer): PromptChunk {
  return promptChunks('', tokenizer)[0]!;
}
