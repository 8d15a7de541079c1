/**
 * The server's settings as A1111's `options` holds them: the model, CLIP skip, the live preview
 * (`live_previews_enable`, `show_progress_type`), and the ToDo extension's keys
 * (sd-webui-token-downsampling). A request's `override_settings` applies on top, for that request only.
 */
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { findComponent } from '../io/model-folder.js';
import { attentionLevels, parseUNetConfig } from '../models/unet.js';
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
      live_previews_enable: true,
      show_progress_type: 'Approx cheap',
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
    for (const k of ['CLIP_stop_at_last_layers', 'live_previews_enable', 'show_progress_type', 'token_downsampling_factor', 'token_downsampling_max_depth', 'token_downsampling_disable_after'] as const) {
      if (patch[k] !== undefined) Object.assign(next, { [k]: patch[k] });
    }
    todoAttention(next, () => modelAttentionLevels(this.registry.resolve(next.sd_model_checkpoint).path), field);
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

/** The U-Net's attention levels of a model (for the ToDo settings), from its config alone. */
export function modelAttentionLevels(modelPath: string): number[] {
  return attentionLevels(parseUNetConfig(findComponent(modelPath, 'unet').config));
}
