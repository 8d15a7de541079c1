/** AttentionOptions as users write them, checked and resolved into one AttentionVariant. */
import { denseAttention } from './dense.js';
import { autoTodoFactor, TODO_MODES, todoAttention, type TodoMode, type TodoOptions } from './todo.js';
import type { AttentionVariant } from './variant.js';

export type { TodoOptions, TodoMode };

export interface DenseOptions {
  method: 'dense';
}

export type AttentionOptions = DenseOptions | TodoOptions;

export interface ResolvedAttention {
  /** Normalised options (defaults filled in): part of the graph cache key and of reports. */
  options: AttentionOptions;
  /** The variant for a given latent size ('auto' factors depend on it). */
  variant(at: { latent: readonly [number, number] }): AttentionVariant;
}

const METHODS = ['dense', 'todo'];

function fail(msg: string): never {
  throw new Error(`attention options: ${msg}`);
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

export function resolveAttention(o: AttentionOptions): ResolvedAttention {
  if (!o || typeof o !== 'object') fail(`expected an object such as { method: 'todo', factor: 2 }; got ${JSON.stringify(o)}`);
  switch (o.method) {
    case 'dense':
      checkKeys(o, ['method']);
      return { options: { method: 'dense' }, variant: () => denseAttention };
    case 'todo': {
      checkKeys(o, ['method', 'factor', 'mode', 'level2Factor', 'stopAt']);
      const factor = o.factor === 'auto' ? 'auto' : intFactor(o.factor, 'factor');
      const mode = o.mode ?? 'nearest';
      if (!TODO_MODES.includes(mode)) fail(`unknown ToDo mode "${String(mode)}"; use one of ${TODO_MODES.join(', ')}`);
      const level2Factor = intFactor(o.level2Factor ?? 1, 'level2Factor');
      const stopAt = o.stopAt ?? 1;
      if (typeof stopAt !== 'number' || !(stopAt >= 0 && stopAt <= 1)) fail(`stopAt must be a fraction of the steps in [0, 1]; got ${JSON.stringify(o.stopAt)}`);
      const options: TodoOptions = { method: 'todo', factor, mode, level2Factor, stopAt };
      return {
        options,
        variant: ({ latent }) => todoAttention({ factor: factor === 'auto' ? autoTodoFactor(latent) : factor, mode, level2Factor, stopAt }),
      };
    }
    default:
      fail(`unknown method "${String((o as { method: unknown }).method)}"; use one of ${METHODS.join(', ')}`);
  }
}
