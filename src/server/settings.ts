/**
 * The server's settings as A1111's `options` holds them: every setting of A1111 v1.10.1
 * (a1111-options.ts), the ToDo extension's keys (sd-webui-token-downsampling) and the DeepCache
 * extension's (sd-webui-deepcache-standalone). todo-sd acts on the model, CLIP skip,
 * img2img_background_color, the live preview (`live_previews_enable`, `show_progress_type`), NGMS
 * (`s_min_uncond`, `s_min_uncond_all`), the ToDo and the DeepCache keys; the others are kept and
 * answered as written. A request's `override_settings` applies on top, for that request only.
 * Types are checked by the request schemas (schemas.ts), values here.
 */
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { UserError } from '../errors.js';
import { parseColor } from '../image/decode.js';
import { findComponent } from '../io/model-folder.js';
import { attentionLevels, parseUNetConfig, type UNetConfig } from '../models/unet.js';
import { cachePointOfLevel } from '../models/unet-cache.js';
import { resolveDeepCache, type DeepCacheOptions } from '../pipeline/deepcache.js';
import { deepCacheFromInfotext } from '../pipeline/deepcache-infotext.js';
import { todoFromInfotext } from '../pipeline/todo-infotext.js';
import { A1111_OPTIONS, type A1111OptionValue } from './a1111-options.js';
import { onFieldError, RequestError } from './errors.js';
import type { ModelRegistry } from './models.js';

/** A1111's live preview methods; "Full" and "Approx NN" are not offered and show "Approx cheap". */
export const SHOW_PROGRESS_TYPES = ['Full', 'Approx NN', 'Approx cheap', 'TAESD'] as const;

/** The settings todo-sd acts on. */
export interface Settings {
  sd_model_checkpoint: string;
  CLIP_stop_at_last_layers: number;
  /** What transparent parts of an img2img picture become. */
  img2img_background_color: string;
  live_previews_enable: boolean;
  show_progress_type: (typeof SHOW_PROGRESS_TYPES)[number];
  token_downsampling_factor: number;
  token_downsampling_max_depth: number;
  token_downsampling_disable_after: number;
  deepcache_enable_pass: 'disable' | 'second pass' | 'both passes';
  deepcache_cache_resnet_level: number;
  deepcache_cache_enable_step_percentage: number;
  deepcache_full_run_step_rate: number;
  /** Accepted and kept; not applied: the hires pass runs at another size, whose features the first pass cannot give. */
  deepcache_hr_reuse: boolean;
  deepcache_cache_enable_step_percentage_hr: number;
  s_min_uncond: number;
  s_min_uncond_all: boolean;
}

export type SettingsPatch = Partial<Settings> & Record<string, unknown>;

/** The ToDo extension's settings and their defaults (dense attention). */
export const TODO_OPTIONS = { token_downsampling_factor: 1, token_downsampling_max_depth: 1, token_downsampling_disable_after: 1 } as const;

/** The DeepCache extension's settings and its defaults (off). */
export const DEEPCACHE_OPTIONS: Pick<Settings, `deepcache_${string}` & keyof Settings> = {
  deepcache_enable_pass: 'disable',
  deepcache_cache_resnet_level: 0,
  deepcache_cache_enable_step_percentage: 0.4,
  deepcache_full_run_step_rate: 5,
  deepcache_hr_reuse: false,
  deepcache_cache_enable_step_percentage_hr: 0,
};

type Values = Record<string, A1111OptionValue> & Settings;

export class ServerSettings {
  private current: Values;

  constructor(
    private readonly registry: ModelRegistry,
    model: string,
  ) {
    // A1111's defaults; the preview answers with the method it runs.
    this.current = {
      ...A1111_OPTIONS,
      ...TODO_OPTIONS,
      ...DEEPCACHE_OPTIONS,
      CLIP_stop_at_last_layers: 1,
      img2img_background_color: '#ffffff',
      live_previews_enable: true,
      show_progress_type: 'Approx cheap',
      s_min_uncond: 0,
      s_min_uncond_all: false,
      sd_model_checkpoint: registry.resolve(model).title,
    };
  }

  /** Every setting, as GET options answers them. */
  get(): Readonly<Values> {
    return this.current;
  }

  /**
   * The settings with a patch applied (validated): a request's override_settings, or POST options.
   * `field` names where the patch came from in errors. Unknown keys are ignored.
   */
  merged(patch: SettingsPatch | null | undefined, field: string): Values {
    const next: Values = { ...this.current };
    if (!patch) return next;
    for (const [k, v] of Object.entries(patch)) if (k in next && v !== undefined) next[k] = v as A1111OptionValue;
    if (patch.sd_model_checkpoint !== undefined) {
      try {
        next.sd_model_checkpoint = this.registry.resolve(patch.sd_model_checkpoint).title;
      } catch (e) {
        onFieldError(`${field}sd_model_checkpoint`, e);
      }
    }
    try {
      parseColor(next.img2img_background_color);
    } catch (e) {
      onFieldError(`${field}img2img_background_color`, e);
    }
    const unet = (): UNetConfig => modelUNetConfig(this.registry.resolve(next.sd_model_checkpoint).path);
    todoAttention(next, () => attentionLevels(unet()), field);
    deepCacheSettings(next, unet, true, field);
    return next;
  }

  /** POST options. */
  update(patch: SettingsPatch): void {
    this.current = this.merged(patch, '');
  }
}

/**
 * The ToDo extension's settings as AttentionOptions, with the extension's meaning of "max depth"
 * (resolution levels from the top) on the model's own attention levels: the same mapping as
 * reading its infotext keys back.
 */
export function todoAttention(s: Settings, attentionLevels: () => readonly number[], field = ''): AttentionOptions {
  if (s.token_downsampling_factor <= 1) return { method: 'dense' };
  const fields = {
    'ToDo factor': String(s.token_downsampling_factor),
    'ToDo max depth': String(s.token_downsampling_max_depth),
    'ToDo disable after': String(s.token_downsampling_disable_after),
  };
  let options: AttentionOptions;
  try {
    options = todoFromInfotext(fields, attentionLevels()) ?? { method: 'dense' };
    resolveAttention(options);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new RequestError(`${field}token_downsampling_max_depth`, e.message.replace(/^(infotext|attention options): /, ''));
  }
  return options;
}

/**
 * The DeepCache extension's settings as each pass's DeepCache (`second` only with a hires fix),
 * the same mapping as reading its infotext key back; its "resnet level" is a
 * cache point of the model's U-Net (unet-cache.ts), and a refresh rate below 1 turns it off.
 */
export function deepCacheSettings(s: Settings, unet: () => UNetConfig, hires: boolean, field = ''): { first?: DeepCacheOptions; second?: DeepCacheOptions | false } {
  if (s.deepcache_enable_pass === 'disable' || s.deepcache_full_run_step_rate < 1) return {};
  const cfg = unet();
  let point;
  try {
    point = cachePointOfLevel(cfg, s.deepcache_cache_resnet_level);
  } catch (e) {
    onFieldError(`${field}deepcache_cache_resnet_level`, e);
  }
  const passes = deepCacheFromInfotext(
    {
      'DeepCache pass': s.deepcache_enable_pass,
      'DeepCache interval': String(s.deepcache_full_run_step_rate),
      'DeepCache layer': String(point.layer),
      'DeepCache block': String(point.block),
      'DeepCache start': String(s.deepcache_cache_enable_step_percentage),
      'Hires DeepCache start': String(s.deepcache_cache_enable_step_percentage_hr),
    },
    hires,
  );
  for (const o of [passes.first, passes.second]) if (o) resolveDeepCache(o, cfg);
  return passes;
}

/** A model's U-Net config (for the ToDo and DeepCache settings), from its config file alone. */
export function modelUNetConfig(modelPath: string): UNetConfig {
  return parseUNetConfig(findComponent(modelPath, 'unet').config);
}

/** The U-Net's attention levels of a model (for the ToDo settings). */
export function modelAttentionLevels(modelPath: string): number[] {
  return attentionLevels(modelUNetConfig(modelPath));
}
