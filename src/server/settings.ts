/**
 * The server's settings as A1111's `options` holds them: the model, CLIP skip, the live preview
 * (`live_previews_enable`, `show_progress_type`), the ToDo extension's keys
 * (sd-webui-token-downsampling), the DeepCache extension's (sd-webui-deepcache-standalone) and
 * NGMS (`s_min_uncond`, `s_min_uncond_all`). A request's `override_settings` applies on top, for
 * that request only.
 */
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { findComponent } from '../io/model-folder.js';
import { attentionLevels, parseUNetConfig, type UNetConfig } from '../models/unet.js';
import { cachePointOfLevel } from '../models/unet-cache.js';
import { resolveDeepCache, type DeepCacheOptions } from '../pipeline/deepcache.js';
import { deepCacheFromInfotext } from '../pipeline/deepcache-infotext.js';
import { todoFromInfotext } from '../pipeline/todo-infotext.js';
import { RequestError } from './errors.js';
import type { ModelRegistry } from './models.js';

/** A1111's live preview methods; "Full" and "Approx NN" are not offered and show "Approx cheap". */
export const SHOW_PROGRESS_TYPES = ['Full', 'Approx NN', 'Approx cheap', 'TAESD'] as const;

export interface Settings {
  sd_model_checkpoint: string;
  CLIP_stop_at_last_layers: number;
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

/** The keys a patch may set besides the model (whose name is resolved). */
const PLAIN_KEYS = [
  'CLIP_stop_at_last_layers',
  'live_previews_enable',
  'show_progress_type',
  'token_downsampling_factor',
  'token_downsampling_max_depth',
  'token_downsampling_disable_after',
  'deepcache_enable_pass',
  'deepcache_cache_resnet_level',
  'deepcache_cache_enable_step_percentage',
  'deepcache_full_run_step_rate',
  'deepcache_hr_reuse',
  'deepcache_cache_enable_step_percentage_hr',
  's_min_uncond',
  's_min_uncond_all',
] as const;

export type SettingsPatch = Partial<Settings> & Record<string, unknown>;

/** Options A1111 clients read that todo-sd answers with fixed values. */
const FIXED = { samples_format: 'png', sd_vae: 'Automatic', sd_checkpoint_hash: null, enable_pnginfo: true, img2img_background_color: '#ffffff' };

export class ServerSettings {
  private current: Settings;

  constructor(
    private readonly registry: ModelRegistry,
    model: string,
  ) {
    this.current = {
      sd_model_checkpoint: registry.resolve(model).title,
      CLIP_stop_at_last_layers: 1,
      live_previews_enable: true,
      show_progress_type: 'Approx cheap',
      token_downsampling_factor: 1,
      token_downsampling_max_depth: 1,
      token_downsampling_disable_after: 1,
      // The DeepCache extension's defaults.
      deepcache_enable_pass: 'disable',
      deepcache_cache_resnet_level: 0,
      deepcache_cache_enable_step_percentage: 0.4,
      deepcache_full_run_step_rate: 5,
      deepcache_hr_reuse: false,
      deepcache_cache_enable_step_percentage_hr: 0,
      s_min_uncond: 0,
      s_min_uncond_all: false,
    };
  }

  get(): Settings & typeof FIXED {
    return { ...FIXED, ...this.current };
  }

  /** The settings with a patch applied (validated); `field` names where the patch came from in errors. */
  merged(patch: SettingsPatch | null | undefined, field: string): Settings {
    const next = { ...this.current };
    if (!patch) return next;
    if (patch.sd_model_checkpoint !== undefined) {
      try {
        next.sd_model_checkpoint = this.registry.resolve(patch.sd_model_checkpoint).title;
      } catch (e) {
        throw new RequestError(`${field}sd_model_checkpoint`, (e as Error).message);
      }
    }
    for (const k of PLAIN_KEYS) if (patch[k] !== undefined) Object.assign(next, { [k]: patch[k] });
    const unet = (): UNetConfig => modelUNetConfig(this.registry.resolve(next.sd_model_checkpoint).path);
    todoAttention(next, () => attentionLevels(unet()), field);
    deepCacheSettings(next, unet, true, field);
    return next;
  }

  /** POST options: unknown keys are ignored, as A1111 does. */
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
    throw new RequestError(`${field}token_downsampling_max_depth`, (e as Error).message.replace(/^(infotext|attention options): /, ''));
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
    throw new RequestError(`${field}deepcache_cache_resnet_level`, (e as Error).message);
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
