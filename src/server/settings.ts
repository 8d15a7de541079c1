/**
 * The server's settings as A1111's `options` holds them: every setting of A1111 v1.10.1
 * (a1111-options.ts) and the speed methods' keys (speed-methods.ts: the ToDo extension's,
 * A1111's ToMe ratio, the DeepCache extension's, NGMS). todo-sd acts on the model, CLIP skip,
 * img2img_background_color, the live preview (`live_previews_enable`, `show_progress_type`),
 * `batch_cond_uncond` and the speed methods' keys; the others are kept and answered as written. A request's
 * `override_settings` applies on top, for that request only. Types are checked by the request
 * schemas (schemas.ts), values here.
 */
import { parseColor } from '../image/decode.js';
import { DEEPCACHE_DEFAULTS } from '../pipeline/deepcache-infotext.js';
import { A1111_OPTIONS, type A1111OptionValue } from './a1111-options.js';
import { onFieldError } from './errors.js';
import { modelFacts } from './model-facts.js';
import type { ModelRegistry } from './models.js';
import { speedDefaults, speedJob, type SpeedModel } from './speed-methods.js';

/** A1111's live preview methods; "Full" and "Approx NN" are not offered and show "Approx cheap". */
export const SHOW_PROGRESS_TYPES = ['Full', 'Approx NN', 'Approx cheap', 'TAESD'] as const;

/** The settings todo-sd acts on besides the speed methods'. */
export interface Settings {
  sd_model_checkpoint: string;
  CLIP_stop_at_last_layers: number;
  /** What transparent parts of an img2img picture become. */
  img2img_background_color: string;
  live_previews_enable: boolean;
  show_progress_type: (typeof SHOW_PROGRESS_TYPES)[number];
  /** A guided step's halves in one batch (true) or two calls, for less memory (GenerateOptions.batchCondUncond). */
  batch_cond_uncond: boolean;
}

export type SettingsPatch = Partial<Settings> & Record<string, unknown>;

/**
 * The DeepCache extension's settings that the page does not show (its speed fields are
 * speed-methods.ts's): the cache level, the hires pass's start, and hr_reuse (kept, not applied:
 * the hires pass runs at another size, whose features the first pass cannot give).
 */
export const DEEPCACHE_SETTINGS = { deepcache_cache_resnet_level: 0, deepcache_cache_enable_step_percentage_hr: DEEPCACHE_DEFAULTS.hiresStart, deepcache_hr_reuse: false };

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
      ...speedDefaults(),
      ...DEEPCACHE_SETTINGS,
      CLIP_stop_at_last_layers: 1,
      img2img_background_color: '#ffffff',
      live_previews_enable: true,
      show_progress_type: 'Approx cheap',
      batch_cond_uncond: true,
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
    // Checked as a job with a hires fix would read them (that reads the most).
    speedJob(next, this.speedModel(next.sd_model_checkpoint), field, true);
    return next;
  }

  /** POST options. */
  update(patch: SettingsPatch): void {
    this.current = this.merged(patch, '');
  }

  /** What the speed settings need of a model, read only when a method asks. */
  speedModel(name: string): SpeedModel {
    const path = this.registry.resolve(name).path;
    return {
      get attentionLevels() {
        return modelFacts(path).attentionLevels;
      },
      get unet() {
        return modelFacts(path).unet;
      },
    };
  }
}
