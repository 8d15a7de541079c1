/** AttentionOptions as users write them, checked and resolved into one AttentionVariant. */
import { denseAttention } from './dense.js';
import { FRACTIONAL_TODO_MODES, TODO_MODES, todoAttention, type TodoMode, type TodoOptions } from './todo.js';
import { TomeRandomState, tomeAttention, TORCH_DEFAULT_SEED, type TomeOptions } from './tome.js';
import type { AttentionVariant } from './variant.js';
import { UserError } from '../errors.js';

export type { TodoOptions, TodoMode, TomeOptions };

export interface DenseOptions {
  method: 'dense';
}

export type AttentionOptions = DenseOptions | TodoOptions | TomeOptions;

export interface ResolvedAttention {
  /** Normalised options (defaults filled in): part of the graph cache key and of reports. */
  options: AttentionOptions;
  /** The variant for a given latent size. */
  variant(at: { latent: readonly [number, number] }): AttentionVariant;
}

const METHODS = ['dense', 'todo', 'tome'];

function fail(msg: string): never {
  throw new UserError(`attention options: ${msg}`);
}

function checkKeys(o: object, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) fail(`unknown option "${k}" for method "${(o as { method: string }).method}"; allowed: ${allowed.join(', ')}`);
  }
}

function intFactor(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 1) fail(`${what} must be an integer >= 1 (1 = off); got ${JSON.stringify(v)}`);
  return v as number;
}

/** A ToDo factor: ≥ 1 (1 = off); fractional only where the mode interpolates. */
function todoFactor(v: unknown, what: string, mode: TodoMode): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 1) fail(`${what} must be a number >= 1 (1 = off); got ${JSON.stringify(v)}`);
  if (!Number.isInteger(v) && !FRACTIONAL_TODO_MODES.includes(mode)) {
    fail(`${what} ${v} is fractional, but mode "${mode}" pools whole k x k windows: use an integer factor, or mode ${FRACTIONAL_TODO_MODES.join(' / ')}`);
  }
  return v;
}

export function resolveAttention(o: AttentionOptions): ResolvedAttention {
  if (!o || typeof o !== 'object') fail(`expected an object such as { method: 'todo', factor: 2 }; got ${JSON.stringify(o)}`);
  switch (o.method) {
    case 'dense':
      checkKeys(o, ['method']);
      return { options: { method: 'dense' }, variant: () => denseAttention };
    case 'todo': {
      checkKeys(o, ['method', 'factor', 'mode', 'level2Factor', 'stopAt']);
      const mode = o.mode ?? 'nearest';
      if (!TODO_MODES.includes(mode)) fail(`unknown ToDo mode "${String(mode)}"; use one of ${TODO_MODES.join(', ')}`);
      const factor = o.factor === 'auto' ? 'auto' : todoFactor(o.factor, 'factor', mode);
      const level2Factor = todoFactor(o.level2Factor ?? 1, 'level2Factor', mode);
      const stopAt = o.stopAt ?? 1;
      if (typeof stopAt !== 'number' || !(stopAt >= 0 && stopAt <= 1)) fail(`stopAt must be a fraction of the steps in [0, 1]; got ${JSON.stringify(o.stopAt)}`);
      const options: TodoOptions = { method: 'todo', factor, mode, level2Factor, stopAt };
      return {
        options,
        variant: () => todoAttention({ factor, mode, level2Factor, stopAt }),
      };
    }
    case 'tome': {
      checkKeys(o, ['method', 'ratio', 'sx', 'sy', 'random', 'seed', 'maxDownsample', 'mergeAttn', 'mergeCrossAttn', 'mergeMlp']);
      const sx = intFactor(o.sx ?? 2, 'sx');
      const sy = intFactor(o.sy ?? 2, 'sy');
      const maxRatio = 1 - 1 / (sx * sy);
      if (typeof o.ratio !== 'number' || !(o.ratio >= 0 && o.ratio <= maxRatio)) {
        fail(`ToMe ratio must be in [0, ${maxRatio}] (1 − 1/(sx·sy)) for sx=${sx}, sy=${sy}; got ${JSON.stringify(o.ratio)}`);
      }
      const maxDownsample = o.maxDownsample ?? 1;
      if (![1, 2, 4, 8].includes(maxDownsample)) fail(`maxDownsample must be 1, 2, 4 or 8; got ${JSON.stringify(o.maxDownsample)}`);
      const flag = (v: unknown, d: boolean, what: string): boolean => {
        if (v !== undefined && typeof v !== 'boolean') fail(`${what} must be true or false; got ${JSON.stringify(v)}`);
        return (v as boolean | undefined) ?? d;
      };
      const random = flag(o.random, true, 'random');
      const seed = o.seed ?? TORCH_DEFAULT_SEED;
      if (!Number.isSafeInteger(seed) || seed < 0) fail(`seed must be a non-negative integer; got ${JSON.stringify(o.seed)}`);
      const merge = { attn1: flag(o.mergeAttn, true, 'mergeAttn'), attn2: flag(o.mergeCrossAttn, false, 'mergeCrossAttn'), ff: flag(o.mergeMlp, false, 'mergeMlp') };
      const options: TomeOptions = { method: 'tome', ratio: o.ratio, sx, sy, random, seed, maxDownsample, mergeAttn: merge.attn1, mergeCrossAttn: merge.attn2, mergeMlp: merge.ff };
      // One generator per resolution of the options: a fresh pipeline run draws the same destinations.
      const state = new TomeRandomState(seed);
      return { options, variant: () => tomeAttention({ ratio: o.ratio, sx, sy, random, maxDownsample, merge }, state) };
    }
    default:
      fail(`unknown method "${String((o as { method: unknown }).method)}"; use one of ${METHODS.join(', ')}`);
  }
}
