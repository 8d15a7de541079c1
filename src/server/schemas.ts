/**
 * JSON schemas of the A1111 request bodies: the fields todo-sd reads, with A1111's defaults and
 * this server's limits. Other fields (A1111 has many legacy ones) are accepted and ignored.
 * A1111 clients send null for "not set", so optional fields accept null too.
 */
import { A1111_OPTIONS, type A1111OptionValue } from './a1111-options.js';
import { LIMITS } from './limits.js';
import { speedSchema } from './speed-methods.js';
import { SHOW_PROGRESS_TYPES } from './settings.js';

const int = (def: number | null, min: number, max?: number): object => ({ type: ['integer', 'null'], default: def, minimum: min, ...(max !== undefined && { maximum: max }) });
const num = (def: number | null, min: number, max?: number): object => ({ type: ['number', 'null'], default: def, minimum: min, ...(max !== undefined && { maximum: max }) });
const str = (def: string | null): object => ({ type: ['string', 'null'], default: def });
const bool = (def: boolean): object => ({ type: ['boolean', 'null'], default: def });
/** Up to the tiled limit here; the plain limit is checked with the request (it depends on Tiled Diffusion). */
const size = { type: 'integer', default: 512, minimum: LIMITS.minSize, maximum: LIMITS.maxTiledSize, multipleOf: 8 };
const plainSize = { ...size, maximum: LIMITS.maxSize };

/** A setting's JSON type, from its default: a list holds names; a null default, a name or null. */
function optionType(v: A1111OptionValue): object {
  if (v === null) return { type: ['string', 'null'] };
  if (Array.isArray(v)) return { type: 'array', items: { type: 'string' } };
  return { type: typeof v };
}

/**
 * Every setting (POST options, override_settings): A1111's, typed by their defaults, and the
 * speed methods' (the ToDo and DeepCache extensions'); the settings todo-sd acts on also have their ranges.
 */
export const OPTIONS_SCHEMA = {
  type: 'object',
  properties: {
    ...Object.fromEntries(Object.entries(A1111_OPTIONS).map(([k, v]) => [k, optionType(v)])),
    sd_model_checkpoint: { type: 'string' },
    CLIP_stop_at_last_layers: { type: 'integer', minimum: 1, maximum: 12 },
    live_previews_enable: { type: 'boolean' },
    show_progress_type: { type: 'string', enum: SHOW_PROGRESS_TYPES },
    ...speedSchema(),
    deepcache_cache_resnet_level: { type: 'integer', minimum: 0, maximum: 100 },
    deepcache_cache_enable_step_percentage_hr: { type: 'number', minimum: 0, maximum: 1 },
    deepcache_hr_reuse: { type: 'boolean' },
  },
};

const generation = {
  prompt: { type: 'string', default: '' },
  negative_prompt: { type: 'string', default: '' },
  styles: { type: ['array', 'null'], items: { type: 'string' } },
  seed: { type: 'integer', default: -1, minimum: -1, maximum: 2 ** 32 - 1 },
  sampler_name: str(null),
  sampler_index: str('Euler'),
  scheduler: str(null),
  eta: num(null, 0),
  batch_size: { type: 'integer', default: 1, minimum: 1, maximum: LIMITS.maxBatchSize },
  n_iter: { type: 'integer', default: 1, minimum: 1, maximum: LIMITS.maxIterations },
  steps: { type: 'integer', default: 50, minimum: 1, maximum: LIMITS.maxSteps },
  cfg_scale: { type: 'number', default: 7.0, minimum: 0, maximum: LIMITS.maxCfg },
  width: size,
  height: size,
  denoising_strength: num(null, 0, 1),
  s_min_uncond: num(null, 0, 1000),
  tiling: bool(false),
  override_settings: { type: ['object', 'null'], default: null, properties: OPTIONS_SCHEMA.properties },
  override_settings_restore_afterwards: bool(true),
  script_name: str(null),
  script_args: { type: ['array', 'null'], default: null },
  alwayson_scripts: { type: ['object', 'null'], default: null },
  send_images: { type: 'boolean', default: true },
  save_images: { type: 'boolean', default: false },
} as const;

export const TXT2IMG_SCHEMA = {
  type: 'object',
  properties: {
    ...generation,
    enable_hr: bool(false),
    hr_scale: num(2.0, 1, LIMITS.maxHiresScale),
    hr_upscaler: str(null),
    hr_second_pass_steps: int(0, 0, LIMITS.maxSteps),
    hr_resize_x: int(0, 0, LIMITS.maxSize),
    hr_resize_y: int(0, 0, LIMITS.maxSize),
  },
} as const;

export const IMG2IMG_SCHEMA = {
  type: 'object',
  required: ['init_images'],
  properties: {
    ...generation,
    init_images: { type: 'array', minItems: 1, items: { type: 'string' } },
    resize_mode: { type: 'integer', default: 0, minimum: 0, maximum: 3 },
    denoising_strength: { type: 'number', default: 0.75, minimum: 0, maximum: 1 },
    mask: str(null),
    mask_blur: int(4, 0, 64),
    inpainting_fill: { type: 'integer', default: 0, minimum: 0, maximum: 3 },
    // A1111's own tests send a boolean here (pydantic reads it as 0 / 1).
    inpainting_mask_invert: { type: ['integer', 'boolean'], default: 0, minimum: 0, maximum: 1 },
    include_init_images: bool(false),
  },
} as const;

export const PNG_INFO_SCHEMA = {
  type: 'object',
  required: ['image'],
  properties: { image: { type: 'string', minLength: 1 } },
} as const;

/** GET /todo-sd/v1/speedup: a size, optionally a model and a hires scale, and speed settings over the server's. */
export const SPEEDUP_SCHEMA = {
  type: 'object',
  properties: {
    width: plainSize,
    height: plainSize,
    model: { type: 'string' },
    hr_scale: num(null, 1, LIMITS.maxHiresScale),
    // DeepCache's schedule: which steps run whole (the hires pass's default: steps).
    steps: { type: 'integer', default: 20, minimum: 1, maximum: LIMITS.maxSteps },
    hr_second_pass_steps: int(null, 1, LIMITS.maxSteps),
    ...speedSchema(),
  },
} as const;
