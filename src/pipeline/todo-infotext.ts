/**
 * ToDo's settings in the PNG `parameters` text under the keys of the AUTOMATIC1111 extension
 * sd-webui-token-downsampling, so images made here read back there and the other way round.
 *
 * The extension's semantics (scripts/token_downsampling.py): `ToDo factor` is one float factor
 * (1–5 in steps of 0.5, written as a Python float, "2.0") applied with nearest-exact at every
 * level whose downsampling is at most 2^(max depth − 1), i.e. resolution levels 0 … depth − 1;
 * for SDXL it clamps the depth to 2–3. `ToDo disable after` is the fraction of the steps after
 * which ToDo is off. Here `factor` is the first attention level's and `level2Factor` the
 * next one's; what the extension cannot say (another mode, a different second factor) goes
 * in extra keys that it ignores.
 */
import { autoTodoFactor, type TodoMode, type TodoOptions } from '../attention/todo.js';
import { UserError } from '../errors.js';
import { infotextNumber, pyFloat } from './infotext-values.js';

/** The extension's only operator. */
const EXTENSION_MODE: TodoMode = 'nearest-exact';

/** A level's token grid: each downsampler (3x3, stride 2, padding 1) gives ⌈n / 2⌉. */
function levelGrid(latent: readonly [number, number], level: number): [number, number] {
  let [h, w] = latent;
  for (let i = 0; i < level; i++) [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
  return [h, w];
}

/**
 * Infotext fields for resolved ToDo options. `attentionLevels`: the U-Net's resolution levels
 * with self-attention (see attentionLevels in models/unet.ts); `latent`: the latent's grid
 * (for `factor: 'auto'`, written as the factor it resolved to).
 */
export function todoInfotext(o: TodoOptions, attentionLevels: readonly number[], latent: readonly [number, number]): [string, string][] {
  const [first, second] = attentionLevels;
  if (first === undefined) return [];
  const factor = o.factor === 'auto' ? autoTodoFactor(levelGrid(latent, first)) : o.factor;
  const level2 = o.level2Factor ?? 1;
  const both = second !== undefined && level2 === factor && factor > 1;
  const fields: [string, string][] = [
    ['ToDo factor', pyFloat(factor)],
    ['ToDo max depth', String((both ? second : first) + 1)],
    ['ToDo disable after', pyFloat(o.stopAt ?? 1)],
  ];
  if (!both && level2 > 1) fields.push(['ToDo level 2 factor', pyFloat(level2)]);
  const mode = o.mode ?? 'nearest';
  if (mode !== EXTENSION_MODE) fields.push(['ToDo mode', mode]);
  return fields;
}

/**
 * ToDo options from infotext fields (`key → value`, as a parameters parser gives them), or
 * undefined when ToDo was off (no factor above 1). Throws when the depth covers more
 * attention levels than the two that todo-sd downsamples.
 */
export function todoFromInfotext(fields: Readonly<Record<string, string>>, attentionLevels: readonly number[]): TodoOptions | undefined {
  const num = (key: string): number | undefined => infotextNumber(fields, key);
  const factor = num('ToDo factor');
  if (factor === undefined || factor <= 1 || attentionLevels.length === 0) return undefined;
  const depth = num('ToDo max depth') ?? 1;
  // The extension clamps the depth up to the first level with attention (SDXL: 1 → 2).
  const covered = attentionLevels.filter((level) => level < depth);
  if (covered.length > 2) {
    throw new UserError(
      `infotext: "ToDo max depth: ${depth}" downsamples ${covered.length} attention levels of this model; todo-sd downsamples at most two (factor, level2Factor): use max depth ${attentionLevels[1]! + 1} or less`,
    );
  }
  return {
    method: 'todo',
    factor,
    mode: (fields['ToDo mode'] as TodoMode | undefined) ?? EXTENSION_MODE,
    level2Factor: num('ToDo level 2 factor') ?? (covered.length === 2 ? factor : 1),
    stopAt: num('ToDo disable after') ?? 1,
  };
}

const HIRES = 'Hires ';

/** The values todoInfotext leaves out when they are the default. */
const OMITTED_DEFAULTS: readonly [string, string][] = [
  ['ToDo level 2 factor', '1.0'],
  ['ToDo mode', EXTENSION_MODE],
];

/**
 * The hires fix's second pass as `Hires ToDo …` fields that override the first pass's `ToDo …`
 * fields (`first`, as todoInfotext wrote them; empty when the first pass had no ToDo). Without
 * them the second pass is the first pass's setting, as the extension applies one setting to
 * both passes; so a dense second pass after a ToDo first pass says `Hires ToDo factor: 1.0`.
 */
export function hiresTodoInfotext(first: readonly [string, string][], second: TodoOptions | undefined, attentionLevels: readonly number[], latent: readonly [number, number]): [string, string][] {
  if (!second) return first.length > 0 ? [[`${HIRES}ToDo factor`, '1.0']] : [];
  const mine = todoInfotext(second, attentionLevels, latent);
  const theirs = new Map(first);
  const fields = mine.filter(([k, v]) => k === 'ToDo factor' || theirs.get(k) !== v);
  for (const [k, d] of OMITTED_DEFAULTS) if (theirs.has(k) && !mine.some(([m]) => m === k)) fields.push([k, d]);
  return fields.map(([k, v]) => [HIRES + k, v]);
}

/**
 * The second pass's ToDo from `Hires ToDo …` fields over the first pass's: `same` when there
 * are none (the first pass's setting), undefined when it was off.
 */
export function hiresTodoFromInfotext(fields: Readonly<Record<string, string>>, attentionLevels: readonly number[]): TodoOptions | undefined | 'same' {
  if (!(`${HIRES}ToDo factor` in fields)) return 'same';
  const merged: Record<string, string> = { ...fields };
  for (const [k, v] of Object.entries(fields)) if (k.startsWith(`${HIRES}ToDo `)) merged[k.slice(HIRES.length)] = v;
  return todoFromInfotext(merged, attentionLevels);
}
