/**
 * The speed methods the server offers, described once: each one's settings keys (A1111 option
 * names, so `options` and `override_settings` carry them), their limits and defaults, how the
 * page shows them, and what they ask of a job. The options schema, the settings, the job and
 * the page's form all come from this list: a new method is a new entry here.
 */
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { UserError } from '../errors.js';
import { cachePointOfLevel } from '../models/unet-cache.js';
import type { UNetConfig } from '../models/unet.js';
import { resolveDeepCache, type DeepCacheOptions } from '../pipeline/deepcache.js';
import { DEEPCACHE_DEFAULTS, DEEPCACHE_PASSES, deepCacheFromInfotext } from '../pipeline/deepcache-infotext.js';
import { todoFromInfotext } from '../pipeline/todo-infotext.js';
import { onFieldError, RequestError } from './errors.js';

export interface SpeedField {
  /** The settings key. */
  key: string;
  label: string;
  help: string;
  /** 'text': one of `choices` (A1111 keeps some settings as words). */
  type: 'number' | 'integer' | 'text';
  /** Limits and the page's input step, for numbers. */
  min?: number;
  max?: number;
  step?: number;
  default: number | string;
  /** The value that turns the method off (on its first field). */
  off?: number | string;
  /** Values to offer as a list, when the field is one. */
  choices?: readonly { value: number | string; label: string }[];
  /** The infotext keys that carry it (the first as written, older spellings after): the page reads a PNG's parameters through them. */
  infotext: readonly string[];
}

/** What a method's settings need to know of the model, read only when asked. */
export interface SpeedModel {
  /** The U-Net's resolution levels with self-attention (models/unet.ts attentionLevels). */
  attentionLevels: readonly number[];
  unet: UNetConfig;
}

/** What the speed settings ask of a job. */
export interface SpeedJob {
  /** Dense when no attention method is on. */
  attention: AttentionOptions;
  /** DeepCache of the first pass, and of the hires fix's second (false: off there; absent: as the first). */
  deepcache?: DeepCacheOptions;
  hiresDeepcache?: DeepCacheOptions | false;
  /** NGMS (A1111's s_min_uncond, s_min_uncond_all); 0: off. */
  sMinUncond: number;
  sMinUncondAll: boolean;
  /** The ids of the methods on (none: a dense job). */
  methods: string[];
}

/** The settings the methods read, by key (A1111's flat options). */
export type SpeedSettings = Readonly<Record<string, unknown>>;

export interface SpeedMethod {
  id: string;
  label: string;
  help: string;
  fields: readonly SpeedField[];
  /**
   * This method's part of a job, or undefined when its settings turn it off; `prefix` names the
   * fields in errors; `hires`: the job has a hires fix.
   */
  job(s: SpeedSettings, model: SpeedModel, prefix: string, hires: boolean): Partial<Omit<SpeedJob, 'methods'>> | undefined;
}

const num = (s: SpeedSettings, key: string): number => s[key] as number;

/** Options checked by the attention resolver; its message becomes the named field's error. */
function checked(field: string, make: () => AttentionOptions | undefined): AttentionOptions | undefined {
  try {
    const options = make();
    if (options) resolveAttention(options);
    return options;
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new RequestError(field, e.message.replace(/^(infotext|attention options): /, ''));
  }
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
  job(s, model, prefix) {
    if (num(s, 'token_downsampling_factor') <= 1) return undefined;
    // The extension's keys, read as its infotext is: "max depth" counts the model's own levels.
    const fields = {
      'ToDo factor': String(s.token_downsampling_factor),
      'ToDo max depth': String(s.token_downsampling_max_depth),
      'ToDo disable after': String(s.token_downsampling_disable_after),
    };
    const attention = checked(`${prefix}token_downsampling_max_depth`, () => todoFromInfotext(fields, model.attentionLevels));
    return attention && { attention };
  },
};

const tome: SpeedMethod = {
  id: 'tome',
  label: 'ToMe token merging',
  help: "Merges similar tokens before self-attention (tomesd, A1111's built-in setting). The baseline ToDo is compared with; one of the two at a time.",
  fields: [{ key: 'token_merging_ratio', label: 'Ratio', help: 'fraction of the top-level tokens merged; 0 = off', type: 'number', min: 0, max: 0.75, step: 0.05, default: 0, off: 0, infotext: ['Token merging ratio'] }],
  job(s, _model, prefix) {
    const ratio = num(s, 'token_merging_ratio');
    const attention = ratio > 0 ? checked(`${prefix}token_merging_ratio`, () => ({ method: 'tome', ratio })) : undefined;
    return attention && { attention };
  },
};

const PASS_LABELS: Record<(typeof DEEPCACHE_PASSES)[number], string> = { disable: 'off', 'both passes': 'both passes', 'second pass': 'hires pass only' };

/**
 * DeepCache as A1111's extension (sd-webui-deepcache-standalone) sets it: the page shows its pass,
 * refresh rate and enable-step percentage; its "resnet level" (deepcache_cache_resnet_level) and
 * the hires pass's percentage are settings the method reads too. A refresh rate below 1 turns it
 * off, as in the extension.
 */
const deepcache: SpeedMethod = {
  id: 'deepcache',
  label: 'DeepCache',
  help: "Runs the whole U-Net every few steps and, between, only its shallow part on the cached deep feature (arXiv 2312.00858; A1111's DeepCache extension). Saves about (interval − 1) / interval of the deep part's cost after the start.",
  fields: [
    { key: 'deepcache_enable_pass', label: 'Passes', help: 'which passes cache: both, or only the hires fix\'s second', type: 'text', default: 'disable', off: 'disable', choices: DEEPCACHE_PASSES.map((p) => ({ value: p, label: PASS_LABELS[p] })), infotext: ['DeepCache pass'] },
    { key: 'deepcache_full_run_step_rate', label: 'Interval', help: 'the whole U-Net every this many steps (1: every step; 0: off)', type: 'integer', min: 0, max: 1000, step: 1, default: DEEPCACHE_DEFAULTS.interval, infotext: ['DeepCache interval'] },
    { key: 'deepcache_cache_enable_step_percentage', label: 'Start', help: 'the first fraction of the steps run whole', type: 'number', min: 0, max: 1, step: 0.05, default: DEEPCACHE_DEFAULTS.start, infotext: ['DeepCache start'] },
  ],
  job(s, model, prefix, hires) {
    if (s.deepcache_enable_pass === 'disable' || num(s, 'deepcache_full_run_step_rate') < 1) return undefined;
    let point;
    try {
      point = cachePointOfLevel(model.unet, num(s, 'deepcache_cache_resnet_level'));
    } catch (e) {
      onFieldError(`${prefix}deepcache_cache_resnet_level`, e);
    }
    // The same mapping as reading the extension's infotext key back.
    const passes = deepCacheFromInfotext(
      {
        'DeepCache pass': String(s.deepcache_enable_pass),
        'DeepCache interval': String(s.deepcache_full_run_step_rate),
        'DeepCache layer': String(point.layer),
        'DeepCache block': String(point.block),
        'DeepCache start': String(s.deepcache_cache_enable_step_percentage),
        'Hires DeepCache start': String(s.deepcache_cache_enable_step_percentage_hr),
      },
      hires,
    );
    for (const o of [passes.first, passes.second]) if (o) resolveDeepCache(o, model.unet);
    if (!passes.first && !passes.second) return undefined;
    return { ...(passes.first && { deepcache: passes.first }), ...(passes.second !== undefined && { hiresDeepcache: passes.second }) };
  },
};

const ngms: SpeedMethod = {
  id: 'ngms',
  label: 'NGMS',
  help: "A1111's Negative Guidance minimum sigma: below this sigma every other step runs the prompt's half alone (s_min_uncond_all: every step). Late steps, where the negative prompt changes little, cost half.",
  fields: [{ key: 's_min_uncond', label: 'Sigma', help: 'negative prompt skipped below this sigma on every other step; 0 = off', type: 'number', min: 0, max: 1000, step: 0.1, default: 0, off: 0, infotext: ['NGMS'] }],
  job(s) {
    const sigma = num(s, 's_min_uncond');
    return sigma > 0 ? { sMinUncond: sigma, sMinUncondAll: s.s_min_uncond_all === true } : undefined;
  },
};

export const SPEED_METHODS: readonly SpeedMethod[] = [todo, tome, deepcache, ngms];

export const SPEED_FIELDS: readonly SpeedField[] = SPEED_METHODS.flatMap((m) => m.fields);

/** The defaults of every speed field (what the server starts with). */
export function speedDefaults(): Record<string, number | string> {
  return Object.fromEntries(SPEED_FIELDS.map((f) => [f.key, f.default]));
}

/** JSON-schema properties of the speed fields, for `options` and `override_settings`. */
export function speedSchema(): Record<string, object> {
  return Object.fromEntries(
    SPEED_FIELDS.map((f) => [f.key, f.type === 'text' ? { type: 'string', enum: f.choices!.map((c) => c.value) } : { type: f.type, minimum: f.min, maximum: f.max }]),
  );
}

/** What the speed settings ask of a job (`hires`: it has a hires fix). Two methods that both change self-attention are an error. */
export function speedJob(s: SpeedSettings, model: SpeedModel, prefix = '', hires = false): SpeedJob {
  const job: SpeedJob = { attention: { method: 'dense' }, sMinUncond: 0, sMinUncondAll: false, methods: [] };
  let by: SpeedMethod | undefined;
  for (const m of SPEED_METHODS) {
    const part = m.job(s, model, prefix, hires);
    if (!part) continue;
    if (part.attention && by) {
      const [a1, a2] = [by.fields[0]!, m.fields[0]!];
      throw new RequestError(`${prefix}${a2.key}`, `${by.label} and ${m.label} both change self-attention: turn one off (${a1.key} ${a1.off} or ${a2.key} ${a2.off})`);
    }
    if (part.attention) by = m;
    Object.assign(job, part);
    job.methods.push(m.id);
  }
  return job;
}
