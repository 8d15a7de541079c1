/**
 * The server's settings as A1111's `options` holds them: the model, CLIP skip, and the ToDo
 * extension's keys (sd-webui-token-downsampling). A request's `override_settings` applies on top,
 * for that request only.
 */
import type { AttentionOptions } from '../attention/options.js';
import { RequestError } from './errors.js';
import type { ModelRegistry } from './models.js';

export interface Settings {
  sd_model_checkpoint: string;
  CLIP_stop_at_last_layers: number;
  token_downsampling_factor: number;
  token_downsampling_max_depth: number;
  token_downsampling_disable_after: number;
}

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
      token_downsampling_factor: 1,
      token_downsampling_max_depth: 1,
      token_downsampling_disable_after: 1,
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
    for (const k of ['CLIP_stop_at_last_layers', 'token_downsampling_factor', 'token_downsampling_max_depth', 'token_downsampling_disable_after'] as const) {
      if (patch[k] !== undefined) next[k] = patch[k];
    }
    todoAttention(next, field);
    return next;
  }

  /** POST options: unknown keys are ignored, as A1111 does. */
  update(patch: SettingsPatch): void {
    this.current = this.merged(patch, '');
  }
}

/**
 * The ToDo extension's settings as AttentionOptions. Its "max depth" counts attention levels from
 * the top (1 = the latent's own resolution); its operator is nearest-exact.
 */
export function todoAttention(s: Settings, field = ''): AttentionOptions {
  const factor = s.token_downsampling_factor;
  if (factor <= 1) return { method: 'dense' };
  if (s.token_downsampling_max_depth > 2) {
    throw new RequestError(`${field}token_downsampling_max_depth`, `token_downsampling_max_depth ${s.token_downsampling_max_depth} is beyond the two ToDo levels this build has; use 1 or 2`);
  }
  if (!Number.isInteger(factor)) {
    throw new RequestError(`${field}token_downsampling_factor`, `token_downsampling_factor must be a whole number in this build (fractional factors are not supported yet); got ${factor}`);
  }
  return {
    method: 'todo',
    factor,
    mode: 'nearest-exact',
    level2Factor: s.token_downsampling_max_depth >= 2 ? factor : 1,
    stopAt: s.token_downsampling_disable_after,
  };
}
