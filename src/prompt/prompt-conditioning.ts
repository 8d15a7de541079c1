/**
 * The text conditioning a denoising loop uses, step by step: the prompt and negative prompt in
 * AUTOMATIC1111's syntax (emphasis, chunks, BREAK, prompt editing) or diffusers' plain handling,
 * negative half first, as one classifier-free-guidance batch.
 */
import type { Tensor } from '../tensor.js';
import type { ChunkTokenizer } from './chunks.js';
import { encodeWeighted, padToLength, type EncodeTokens } from './conditioning.js';
import { entryAt, promptSchedule, type ScheduledPrompt } from './schedule.js';

export const PROMPT_SYNTAXES = ['a1111', 'plain'] as const;
export type PromptSyntax = (typeof PROMPT_SYNTAXES)[number];

/** A tokenizer that can also do diffusers' plain encoding (77 ids, truncated with a warning). */
export interface PromptTokenizer extends ChunkTokenizer {
  encode(prompt: string): number[];
}

export interface ConditioningRequest {
  prompt: string;
  negativePrompt: string;
  /** Sampling steps, for prompt editing. */
  steps: number;
  /** Images per prompt: each half of the batch repeats its conditioning this often. */
  batch: number;
  /** With guidance the negative half comes first; without, only the prompt is encoded. */
  guided: boolean;
  syntax: PromptSyntax;
  /** For a hires fix's second pass: the first pass's steps (prompt editing counts from there, as A1111). */
  firstPassSteps?: number;
}

interface Scheduled {
  schedule: ScheduledPrompt[];
  conds: Tensor[];
}

export class PromptConditioning {
  private readonly cache = new Map<string, Tensor>();

  private constructor(
    private readonly positive: Scheduled,
    private readonly negative: Scheduled | null,
    private readonly emptyCond: Tensor,
    private readonly batch: number,
  ) {}

  static async build(req: ConditioningRequest, tokenizer: PromptTokenizer, encode: EncodeTokens): Promise<PromptConditioning> {
    if (req.syntax === 'plain') {
      const plain = async (text: string): Promise<Scheduled> => {
        const ids = Int32Array.from(tokenizer.encode(text));
        return { schedule: [{ endAt: req.steps, prompt: text }], conds: [await encode({ data: ids, dims: [1, ids.length] })] };
      };
      const positive = await plain(req.prompt);
      // Plain conditionings all have the tokenizer's length, so the padding chunk is never used.
      return new PromptConditioning(positive, req.guided ? await plain(req.negativePrompt) : null, positive.conds[0]!, req.batch);
    }
    const scheduled = async (text: string): Promise<Scheduled> => {
      const schedule = promptSchedule(text, req.steps, req.firstPassSteps);
      return { schedule, conds: await encodeWeighted(schedule.map((e) => e.prompt), tokenizer, encode) };
    };
    const positive = await scheduled(req.prompt);
    const negative = req.guided ? await scheduled(req.negativePrompt) : null;
    const [emptyCond] = await encodeWeighted([''], tokenizer, encode);
    return new PromptConditioning(positive, negative, emptyCond!, req.batch);
  }

  /** Whether the conditioning changes during sampling (prompt editing or alternation). */
  get scheduled(): boolean {
    return this.positive.schedule.length > 1 || (this.negative?.schedule.length ?? 1) > 1;
  }

  /** The encoder hidden states for sampling step `step` (0-based): [(2·)batch, tokens, width]. */
  at(step: number): Tensor {
    const p = entryAt(this.positive.schedule, step);
    const n = this.negative === null ? -1 : entryAt(this.negative.schedule, step);
    const key = `${n}/${p}`;
    let t = this.cache.get(key);
    if (t === undefined) {
      t = this.combine(this.negative?.conds[n], this.positive.conds[p]!);
      this.cache.set(key, t);
    }
    return t;
  }

  private combine(negative: Tensor | undefined, positive: Tensor): Tensor {
    const halves = negative === undefined ? [positive] : [negative, positive];
    const tokens = Math.max(...halves.map((h) => h.dims[1]!));
    const width = positive.dims[2]!;
    const padded = halves.map((h) => padToLength(h, tokens, this.emptyCond));
    const rows = padded.flatMap((h) => Array<Tensor>(this.batch).fill(h));
    const data = new Float32Array(rows.length * tokens * width);
    rows.forEach((r, i) => data.set(r.data, i * tokens * width));
    return { data, dims: [rows.length, tokens, width] };
  }
}
