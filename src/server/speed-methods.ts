/**
 * The speed methods the server offers, described once: each one's settings keys (A1111 option
 * names, so `options` and `override_settings` carry them), their limits and defaults, how the
 * page shows them, and what they ask of a job. The options schema, the settings, the job and
 * the page's form all come from this list: a new method is a new entry here (and, for a
 * method that is not an attention method, its part of the job in `speedJob`).
 */
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { todoFromInfotext } from '../pipeline/todo-infotext.js';
import { RequestError } from './errors.js';

export interface SpeedField {
  /** The settings key. */
  key: string;
  label: string;
  help: string;
  type: 'number' | 'integer';
  min: number;
  max: number;
  /** The page's input step. */
  step: number;
  default: number;
  /** The value that turns the method off (on its first field). */
  off?: number;
  /** Values to offer as a list, when the field is one. */
  choices?: readonly { value: number; label: string }[];
  /** The infotext keys that carry it (the first as written, older spellings after): the page reads a PNG's parameters through them. */
  infotext: readonly string[];
}

/** What a method's settings need to know of the model. */
export interface SpeedModel {
  /** The U-Net's resolution levels with self-attention (models/unet.ts attentionLevels). */
  attentionLevels: readonly number[];
}

export interface SpeedMethod {
  id: string;
  label: string;
  help: string;
  fields: readonly SpeedField[];
  /** The attention this method asks for, or undefined when its settings turn it off; `prefix` names the fields in errors. */
  attention(s: SpeedSettings, model: SpeedModel, prefix: string): AttentionOptions | undefined;
}

const TODO_FACTORS = [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5].map((v) => ({ value: v, label: v === 1 ? 'off' : String(v) }));

const todo: SpeedMethod = {
  id: 'todo',
  label: 'ToDo token downsampling',
  help: "Downsamples self-attention's keys and values (arXiv 2402.13573). Gains grow with the size: little at 512 px, about 2x at 2048 px on SD 1.5.",
  fields: [
    { key: 'token_downsampling_factor', label: 'Factor', help: 'keys and values are downsampled by this factor per side; 1 = off', type: 'number', min: 1, max: 8, step: 0.5, default: 1, off: 1, choices: TODO_FACTORS, infotext: ['ToDo factor'] },
    { key: 'token_downsampling_max_depth', label: 'Max depth', help: 'resolution levels downsampled, counted from the top (1: the largest only)', type: 'integer', min: 1, max: 4, step: 1, default: 1, infotext: ['ToDo max depth'] },
    { key: 'token_downsampling_disable_after', label: 'Disable after', help: 'back to dense attention after this fraction of the steps (0.6–0.8 keeps more detail)', type: 'number', min: 0, max: 1, step: 0.05, default: 1, infotext: ['ToDo disable after', 'ToDo stop at'] },
  ],
  attention(s, model, prefix) {
    if (s.token_downsampling_factor! <= 1) return undefined;
    // The extension's keys, read as its infotext is: "max depth" counts the model's own levels.
    const fields = {
      'ToDo factor': String(s.token_downsampling_factor),
      'ToDo max depth': String(s.token_downsampling_max_depth),
      'ToDo disable after': String(s.token_downsampling_disable_after),
    };
    return checked(`${prefix}token_downsampling_max_depth`, () => todoFromInfotext(fields, model.attentionLevels));
  },
};

const tome: SpeedMethod = {
  id: 'tome',
  label: 'ToMe token merging',
  help: "Merges similar tokens before self-attention (tomesd, A1111's built-in setting). The baseline ToDo is compared with; one of the two at a time.",
  fields: [{ key: 'token_merging_ratio', label: 'Ratio', help: 'fraction of the top-level tokens merged; 0 = off', type: 'number', min: 0, max: 0.75, step: 0.05, default: 0, off: 0, infotext: ['Token merging ratio'] }],
  attention(s, _model, prefix) {
    const ratio = s.token_merging_ratio!;
    return ratio > 0 ? checked(`${prefix}token_merging_ratio`, () => ({ method: 'tome', ratio })) : undefined;
  },
};

export const SPEED_METHODS: readonly SpeedMethod[] = [todo, tome];

export const SPEED_FIELDS: readonly SpeedField[] = SPEED_METHODS.flatMap((m) => m.fields);

export type SpeedSettings = Partial<Record<string, number>>;

/** The defaults of every speed field (what the server starts with). */
export function speedDefaults(): Record<string, number> {
  return Object.fromEntries(SPEED_FIELDS.map((f) => [f.key, f.default]));
}

/** JSON-schema properties of the speed fields, for `options` and `override_settings`. */
export function speedSchema(): Record<string, object> {
  return Object.fromEntries(SPEED_FIELDS.map((f) => [f.key, { type: f.type, minimum: f.min, maximum: f.max }]));
}

/** Options checked by the attention resolver; its message becomes the named field's error. */
function checked(field: string, make: () => AttentionOptions | undefined): AttentionOptions | undefined {
  try {
    const options = make();
    if (options) resolveAttention(options);
    return options;
  } catch (e) {
    throw new RequestError(field, (e as Error).message.replace(/^(infotext|attention options): /, ''));
  }
}

/** What the speed settings ask of a job: the attention (dense when no method is on) and the methods that are on. */
export function speedJob(s: SpeedSettings, model: SpeedModel, prefix = ''): { attention: AttentionOptions; methods: string[] } {
  let attention: AttentionOptions = { method: 'dense' };
  let by: SpeedMethod | undefined;
  const methods: string[] = [];
  for (const m of SPEED_METHODS) {
    const a = m.attention(s, model, prefix);
    if (!a) continue;
    if (by) {
      const [a1, a2] = [by.fields[0]!, m.fields[0]!];
      throw new RequestError(`${prefix}${a2.key}`, `${by.label} and ${m.label} both change self-attention: turn one off (${a1.key} ${a1.off} or ${a2.key} ${a2.off})`);
    }
    attention = a;
    by = m;
    methods.push(m.id);
  }
  return { attention, methods };
}
