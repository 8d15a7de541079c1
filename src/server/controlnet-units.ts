/**
 * AUTOMATIC1111's ControlNet extension API: the units of `alwayson_scripts.controlnet.args`
 * (the extension's ControlNetUnit fields, its legacy aliases and its ways of giving an image and
 * a mask) → the job's ControlNet units, every check made before the job is queued.
 */
import type { RgbImage } from '../io/png.js';
import { openControlNetSource, parseControlNetConfig } from '../models/controlnet.js';
import { openComponent } from '../models/model-source.js';
import { parseUNetConfig } from '../models/unet.js';
import { A1111_RESIZE_MODES, CONTROL_PREPROCESSORS, PREPROCESSOR_LABELS, RESIZE_MODES, type ControlPreprocessor, type ResizeMode } from '../pipeline/control-image.js';
import { A1111_CONTROL_MODES, checkControlNetFits, CONTROL_MODES, type ControlMode } from '../pipeline/controlnet.js';
import { onFieldError, RequestError } from './errors.js';
import type { WireControlUnit, WireImage } from './jobs.js';
import { toWire } from './runner.js';

/** Reads a base64 image for `field` (a mask as grey when `mask`), or fails with a 422 naming it. */
export type ImageReader = (b64: string, field: string, mask?: boolean) => Promise<RgbImage>;

type Unit = Record<string, unknown>;

/** The extension's former field names. */
const ALIASES: [string, string][] = [
  ['guidance', 'guidance_end'],
  ['input_image', 'image'],
  ['mask_image', 'mask'],
];

/** The extension's resize modes by number (3 is A1111's "latent" resize: a plain resize here) and by its older names. */
const RESIZE_BY_NUMBER: ResizeMode[] = ['just-resize', 'crop-and-resize', 'resize-and-fill', 'just-resize'];
const RESIZE_ALIASES: Record<string, ResizeMode> = {
  'Inner Fit (Scale to Fit)': 'crop-and-resize',
  'Scale to Fit (Inner Fit)': 'crop-and-resize',
  'Outer Fit (Shrink to Fit)': 'resize-and-fill',
  'Envelope (Outer Fit)': 'resize-and-fill',
};

/** The units given under any capitalisation of `controlnet` in `alwayson_scripts`, or none. */
export function controlNetArgs(alwaysonScripts: unknown): unknown[] | undefined {
  if (alwaysonScripts === null || alwaysonScripts === undefined) return undefined;
  if (typeof alwaysonScripts !== 'object') throw new RequestError('alwayson_scripts', 'alwayson_scripts must be an object of scripts, e.g. {"controlnet": {"args": [...]}}', 'type_error.dict');
  const key = Object.keys(alwaysonScripts).find((k) => k.toLowerCase() === 'controlnet');
  if (key === undefined) return undefined;
  const args = (alwaysonScripts as Record<string, { args?: unknown } | null>)[key]?.args;
  if (args === undefined || args === null) return [];
  if (!Array.isArray(args)) throw new RequestError(`alwayson_scripts.${key}.args`, 'args must be a list of ControlNet units', 'type_error.list');
  return args;
}

export async function a1111ControlUnits(args: readonly unknown[], read: ImageReader, resolveModel: (name: string) => string, hasInitImage: boolean): Promise<WireControlUnit[]> {
  const out: WireControlUnit[] = [];
  for (const [i, raw] of args.entries()) {
    const at = `alwayson_scripts.controlnet.args.${i}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new RequestError(at, 'each ControlNet unit must be an object such as {"enabled": true, "module": "canny", "model": "…", "image": "…"}', 'type_error.dict');
    const u: Unit = { ...(raw as Unit) };
    for (const [from, to] of ALIASES) {
      if (from in u) {
        if (to in u) throw new RequestError(`${at}.${from}`, `"${from}" is the former name of "${to}": give one of them`);
        u[to] = u[from];
      }
    }
    if (u.enabled !== undefined && typeof u.enabled !== 'boolean') throw new RequestError(`${at}.enabled`, 'enabled must be true or false', 'type_error.bool');
    // As the extension: a unit is off unless enabled.
    if (u.enabled !== true) continue;
    const fail = (field: string, msg: string, type = 'value_error'): never => {
      throw new RequestError(`${at}.${field}`, msg, type);
    };
    const num = (field: string, def: number, min = -Infinity, max = Infinity): number => {
      const v = u[field] ?? def;
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(field, `${field} must be a number`, 'type_error.float');
      if ((v as number) < min || (v as number) > max) fail(field, `${field} must be from ${min} to ${max}; got ${String(v)}`, 'value_error.number');
      return v as number;
    };
    const module = String(u.module ?? 'none');
    const preprocessor = ((CONTROL_PREPROCESSORS as readonly string[]).includes(module)
      ? module
      : (Object.keys(PREPROCESSOR_LABELS) as ControlPreprocessor[]).find((k) => PREPROCESSOR_LABELS[k] === module) ??
        fail('module', `module "${module}" is not available; todo-sd has ${CONTROL_PREPROCESSORS.join(', ')} (GET /controlnet/module_list)`)) as ControlPreprocessor;
    const modelName = typeof u.model === 'string' ? u.model : fail('model', 'model must be a string (GET /controlnet/model_list)', 'type_error.str');
    if (modelName === 'None' || modelName === '') fail('model', 'no ControlNet model selected: name one from GET /controlnet/model_list');
    let model = '';
    try {
      model = resolveModel(modelName);
    } catch (e) {
      onFieldError(`${at}.model`, e);
    }
    const start = num('guidance_start', 0, 0, 1);
    const end = num('guidance_end', 1, 0, 1);
    if (start > end) fail('guidance_start', `guidance_start (${start}) > guidance_end (${end})`);
    const { image, mask } = await unitImages(u, at, read);
    if (!image && !hasInitImage) fail('image', 'ControlNet is enabled but no input image is given: set image (base64), or use img2img, whose init image it then takes');
    const guess = u.guessmode === true;
    const unit: WireControlUnit = {
      model,
      preprocessor,
      scale: num('weight', 1, 0, 2),
      start,
      end,
      pixelPerfect: u.pixel_perfect === true,
      controlMode: u.control_mode === undefined && guess ? 'controlnet' : controlMode(u.control_mode, fail),
      resizeMode: resizeMode(u.resize_mode, fail),
      ...(image && { image }),
      ...(mask && { mask }),
    };
    // -1 (or out of range) means the preprocessor's default, as in the extension.
    for (const [field, key] of [['processor_res', 'processorRes'], ['threshold_a', 'thresholdA'], ['threshold_b', 'thresholdB']] as const) {
      if (u[field] !== undefined && u[field] !== null) unit[key] = num(field, -1);
    }
    out.push(unit);
  }
  return out;
}

/** `image` as base64, {image, mask} or [image, mask]; `mask` beside it. */
async function unitImages(u: Unit, at: string, read: ImageReader): Promise<{ image?: WireImage; mask?: WireImage }> {
  let image = u.image;
  let mask = u.mask;
  if (Array.isArray(image)) {
    if (image.length !== 2 || typeof image[0] !== 'string') throw new RequestError(`${at}.image`, 'image as a list must be [image, mask] (base64)');
    [image, mask] = image;
  } else if (image && typeof image === 'object') {
    ({ image, mask } = image as { image?: unknown; mask?: unknown });
  }
  if (image !== undefined && image !== null && typeof image !== 'string') throw new RequestError(`${at}.image`, 'image must be a base64 picture (PNG, JPEG, WebP, …)', 'type_error.str');
  if (mask !== undefined && mask !== null && typeof mask !== 'string') throw new RequestError(`${at}.mask`, 'mask must be a base64 picture (PNG, JPEG, WebP, …)', 'type_error.str');
  const img = image ? await read(image, `${at}.image`) : undefined;
  const m = mask ? await read(mask, `${at}.mask`, true) : undefined;
  if (img && m && (img.width !== m.width || img.height !== m.height)) throw new RequestError(`${at}.mask`, `image shape (${img.height}, ${img.width}) not aligned with mask shape (${m.height}, ${m.width})`);
  return { ...(img && { image: toWire(img) }), ...(m && { mask: toWire(m) }) };
}

function controlMode(v: unknown, fail: (field: string, msg: string) => never): ControlMode {
  if (v === undefined || v === null) return 'balanced';
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < CONTROL_MODES.length) return CONTROL_MODES[v]!;
  const hit = CONTROL_MODES.find((m) => A1111_CONTROL_MODES[m] === v || m === v);
  return hit ?? fail('control_mode', `control_mode must be 0-2 or one of ${Object.values(A1111_CONTROL_MODES).join(', ')}; got ${JSON.stringify(v)}`);
}

function resizeMode(v: unknown, fail: (field: string, msg: string) => never): ResizeMode {
  if (v === undefined || v === null) return 'crop-and-resize';
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < RESIZE_BY_NUMBER.length) return RESIZE_BY_NUMBER[v]!;
  if (typeof v === 'string' && v in RESIZE_ALIASES) return RESIZE_ALIASES[v]!;
  const hit = RESIZE_MODES.find((m) => A1111_RESIZE_MODES[m] === v || m === v);
  return hit ?? fail('resize_mode', `resize_mode must be 0-2 or one of ${Object.values(A1111_RESIZE_MODES).join(', ')}; got ${JSON.stringify(v)}`);
}

/** Refuses (422) a unit whose ControlNet belongs to another model family than the job's model, before the job is queued. */
export function checkControlNetsFit(units: readonly WireControlUnit[], modelPath: string, controlNetPath: (name: string) => string): void {
  if (units.length === 0) return;
  const unet = parseUNetConfig(openComponent(modelPath, 'unet', ['UNet2DConditionModel']).config);
  units.forEach((u, i) => {
    try {
      checkControlNetFits(u.model, parseControlNetConfig(openControlNetSource(controlNetPath(u.model), unet).config), unet);
    } catch (e) {
      onFieldError(`alwayson_scripts.controlnet.args.${i}.model`, e);
    }
  });
}
