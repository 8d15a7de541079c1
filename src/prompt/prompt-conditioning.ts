/**
 * The text conditioning a denoising loop uses, step by step: the prompt and negative prompt in
 * AUTOMATIC1111's syntax (emphasis, chunks, BREAK, prompt editing) or diffusers' plain handling,
 * negative half first, as one classifier-free-guidance batch; with SDXL's second encoder also
 * the pooled vector, which follows the schedule as the hidden states do (A1111 schedules the
 * whole sgm cond dict, `vector` included).
 */
import type { Tensor } from '../tensor.js';
import type { ChunkTokenizer } from './chunks.js';
import { encodeWeighted, joinEncoders, padToLength, type TextEmbedding, type TextEncoding } from './conditioning.js';
import { entryAt, promptSchedule, type ScheduledPrompt } from './schedule.js';

export const PROMPT_SYNTAXES = ['a1111', 'plain'] as const;
export type PromptSyntax = (typeof PROMPT_SYNTAXES)[number];

/** A tokenizer that can also do diffusers' plain encoding (77 ids, truncated with a warning). */
export interface PromptTokenizer extends ChunkTokenizer {
  encode(prompt: string): number[];
}

/** A text encoder and its tokenizer; SDXL has two, ViT-L first (their hidden states are concatenated on channels in this order). */
export interface PromptEncoder extends TextEncoding {
  /** Plain syntax tokenizes whole prompts as well as chunks. */
  tokenizer: PromptTokenizer;
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
  /**
   * The negative half is zeros, hidden states and pooled vector, one chunk long (then padded
   * like any negative): diffusers' SDXL `force_zeros_for_empty_prompt` when no negative prompt
   * is given. (A1111 zeroes SDXL's negative when it is "" instead.)
   */
  zeroNegative?: boolean;
}

interface Scheduled {
  schedule: ScheduledPrompt[];
  conds: TextEmbedding[];
}

export class PromptConditioning {
  private readonly cache = new Map<string, TextEmbedding>();

  private constructor(
    private readonly positive: Scheduled,
    private readonly negative: Scheduled | null,
    private readonly emptyCond: Tensor,
    private readonly batch: number,
  ) {}

  static async build(req: ConditioningRequest, encoders: readonly PromptEncoder[]): Promise<PromptConditioning> {
    const scheduled =
      req.syntax === 'plain'
        ? async (text: string): Promise<Scheduled> => {
            const outs: TextEmbedding[] = [];
            for (const e of encoders) {
              const ids = Int32Array.from(e.tokenizer.encode(text));
              outs.push(await e.encode({ data: ids, dims: [1, ids.length] }));
            }
            return { schedule: [{ endAt: req.steps, prompt: text }], conds: [joinEncoders(outs)] };
          }
        : async (text: string): Promise<Scheduled> => {
            const schedule = promptSchedule(text, req.steps, req.firstPassSteps);
            return { schedule, conds: await encodeWeighted(schedule.map((e) => e.prompt), encoders) };
          };
    const positive = await scheduled(req.prompt);
    // Plain conditionings all have the tokenizer's length, so the padding chunk is never used.
    const [empty] = req.syntax === 'plain' ? positive.conds : await encodeWeighted([''], encoders);
    let negative: Scheduled | null = null;
    if (req.guided) negative = req.zeroNegative ? { schedule: [{ endAt: req.steps, prompt: '' }], conds: [zeros(empty!)] } : await scheduled(req.negativePrompt);
    return new PromptConditioning(positive, negative, empty!.hidden, req.batch);
  }

  /** Whether the conditioning changes during sampling (prompt editing or alternation). */
  get scheduled(): boolean {
    return this.positive.schedule.length > 1 || (this.negative?.schedule.length ?? 1) > 1;
  }

  /** The encoder hidden states for sampling step `step` (0-based): [(2·)batch, tokens, width]. */
  at(step: number): Tensor {
    return this.entry(step).hidden;
  }

  /** The pooled text vectors for sampling step `step`, [(2·)batch, P]; undefined when no encoder gives one (SD 1.x/2.x). */
  pooledAt(step: number): Tensor | undefined {
    return this.entry(step).pooled;
  }

  private entry(step: number): TextEmbedding {
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

  private combine(negative: TextEmbedding | undefined, positive: TextEmbedding): TextEmbedding {
    const halves = negative === undefined ? [positive] : [negative, positive];
    const tokens = Math.max(...halves.map((h) => h.hidden.dims[1]!));
    const hidden = this.rows(halves.map((h) => padToLength(h.hidden, tokens, this.emptyCond)));
    const pooled = positive.pooled && this.rows(halves.map((h) => h.pooled!));
    return { hidden, ...(pooled ? { pooled } : {}) };
  }

  /** One [1, …] tensor per half → [(2·)batch, …], each half repeated `batch` times. */
  private rows(halves: Tensor[]): Tensor {
    const rows = halves.flatMap((h) => Array<Tensor>(this.batch).fill(h));
    const size = halves[0]!.data.length;
    const data = new Float32Array(rows.length * size);
    rows.forEach((r, i) => data.set(r.data, i * size));
    return { data, dims: [rows.length, ...halves[0]!.dims.slice(1)] };
  }
}

/** The same shapes, all zeros. */
function zeros(e: TextEmbedding): TextEmbedding {
  const z = (t: Tensor): Tensor => ({ data: new Float32Array(t.data.length), dims: t.dims });
  return { hidden: z(e.hidden), ...(e.pooled ? { pooled: z(e.pooled) } : {}) };
}
