/**
 * The server's settings as A1111's `options` holds them: the model, CLIP skip, the live preview
 * (`live_previews_enable`, `show_progress_type`), and the speed methods' keys (speed-methods.ts:
 * the ToDo extension's, A1111's ToMe ratio). A request's `override_settings` applies on top, for
 * that request only.
 */
import { RequestError } from './errors.js';
import { modelFacts } from './model-facts.js';
import type { ModelRegistry } from './models.js';
import { SPEED_FIELDS, speedDefaults, speedJob, type SpeedModel } from './speed-methods.js';

/** A1111's live preview methods; "Full" and "Approx NN" are not offered and show "Approx cheap". */
export const SHOW_PROGRESS_TYPES = ['Full', 'Approx NN', 'Approx cheap', 'TAESD'] as const;

export interface Settings {
  sd_model_checkpoint: string;
  CLIP_stop_at_last_layers: number;
  live_previews_enable: boolean;
  show_progress_type: (typeof SHOW_PROGRESS_TYPES)[number];
  /** The speed fields' values, by settings key. */
  speed: Record<string, number>;
}

export type SettingsPatch = Partial<Omit<Settings, 'speed'>> & Record<string, unknown>;

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
      speed: speedDefaults(),
    };
  }

  /** The settings in A1111's flat shape. */
  get(): Record<string, unknown> {
    const { speed, ...core } = this.current;
    return { ...FIXED, ...core, ...speed };
  }

  /** The settings with a patch applied (validated); `field` names where the patch came from in errors. */
  merged(patch: SettingsPatch | null | undefined, field: string): Settings {
    const next = { ...this.current, speed: { ...this.current.speed } };
    if (!patch) return next;
    if (patch.sd_model_checkpoint !== undefined) {
      try {
        next.sd_model_checkpoint = this.registry.resolve(patch.sd_model_checkpoint).title;
      } catch (e) {
        throw new RequestError(`${field}sd_model_checkpoint`, (e as Error).message);
      }
    }
    for (const k of ['CLIP_stop_at_last_layers', 'live_previews_enable', 'show_progress_type'] as const) {
      if (patch[k] !== undefined) Object.assign(next, { [k]: patch[k] });
    }
    for (const f of SPEED_FIELDS) if (typeof patch[f.key] === 'number') next.speed[f.key] = patch[f.key] as number;
    speedJob(next.speed, this.speedModel(next.sd_model_checkpoint), field);
    return next;
  }

  /** POST options: unknown keys are ignored, as A1111 does. */
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
    };
  }
}
