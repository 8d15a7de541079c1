/**
 * Generation options from a PNG's `parameters` (ours or AUTOMATIC1111's), so that an image can
 * be made again: the settings this pipeline understands become GenerateOptions, the others are
 * listed so a caller can say what was not applied.
 */
import type { AttentionOptions } from '../attention/options.js';
import { TODO_MODES } from '../attention/todo.js';
import { PROMPT_SYNTAXES, type PromptSyntax } from '../prompt/index.js';
import { CONSISTENCY_SAMPLERS, KARRAS_SAMPLERS, type SamplerName } from '../scheduler/index.js';
import { resolveSampler, SCHEDULE_TYPES, spacingOfScheduleType } from '../scheduler/names.js';
import type { VaeMethod } from './model-parts.js';
import { A1111_VAE_METHODS, type ParsedParameters } from './parameters.js';
import type { GenerateOptions } from './stable-diffusion.js';
import { A1111_UPSCALER_NAMES, HIRES_UPSCALERS, type HiresOptions } from './hires.js';
import type { SdUpscaleOptions } from './sd-upscale.js';
import { isSdUpscaleKey, sdUpscaleFromInfotext, TILED_DIFFUSION_KEY, tilingFromInfotext } from './tiled-infotext.js';
import { hiresTodoFromInfotext, todoFromInfotext } from './todo-infotext.js';

export interface ParametersAsOptions {
  options: GenerateOptions;
  /** The `Model` setting, if any (the name of the model the image was made with). */
  model?: string;
  /**
   * Settings that describe the generation but are not applied here (A1111's hires sampler, …),
   * each a key, with the reason after it where one helps.
   */
  notApplied: string[];
  /**
   * Image-to-image settings (`Denoising strength` without a hires fix, `Mask blur`): the image
   * was made from an init image (and mask), which a caller must supply to apply them; they are
   * in notApplied until it does.
   */
  imageToImage?: { strength?: number; maskBlur?: number; sdUpscale?: SdUpscaleOptions };
}

/** Keys that describe the image or the program, not the generation. */
const INFORMATIONAL = new Set(['Model', 'Model hash', 'Version']);

function number(key: string, v: string, integer: boolean): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new Error(`parameters: "${key}: ${v}" is not ${integer ? 'an integer' : 'a number'}`);
  }
  return n;
}

/**
 * `attentionLevels`: the resolution levels with self-attention of the U-Net that will run
 * (attentionLevels in models/unet.ts), which the ToDo depth is read against.
 */
export function optionsFromParameters(p: ParsedParameters, attentionLevels: readonly number[]): ParametersAsOptions {
  const s = p.settings;
  const options: GenerateOptions = { prompt: p.prompt, negativePrompt: p.negativePrompt };
  const used = new Set<string>();
  const take = (key: string): string | undefined => {
    if (!(key in s)) return undefined;
    used.add(key);
    return s[key];
  };
  const steps = take('Steps');
  if (steps !== undefined) options.steps = number('Steps', steps, true);
  const reasons = new Map<string, string>();
  const sampler = take('Sampler');
  if (sampler !== undefined) {
    const r = resolveSampler(sampler);
    options.sampler = r.sampler;
    options.karras = r.karras === true;
    scheduleFrom(s['Schedule type'], options, used, reasons);
    // The tcd sampler's γ; A1111's own Eta (ancestral, DDIM) is not offered.
    if (r.sampler === 'tcd' && 'Eta' in s) options.eta = number('Eta', take('Eta')!, false);
  }
  const cfg = take('CFG scale');
  if (cfg !== undefined) options.cfg = number('CFG scale', cfg, false);
  const seed = take('Seed');
  if (seed !== undefined) options.seed = number('Seed', seed, true);
  const size = take('Size');
  if (size !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(size);
    if (!m) throw new Error(`parameters: "Size: ${size}" is not WIDTHxHEIGHT`);
    options.width = Number(m[1]);
    options.height = Number(m[2]);
  }
  const clipSkip = take('Clip skip');
  if (clipSkip !== undefined) options.clipSkip = number('Clip skip', clipSkip, true);
  const syntax = take('Prompt syntax');
  if (syntax !== undefined) {
    if (!(PROMPT_SYNTAXES as readonly string[]).includes(syntax)) throw new Error(`parameters: "Prompt syntax: ${syntax}" is not one of ${PROMPT_SYNTAXES.join(', ')}`);
    options.promptSyntax = syntax as PromptSyntax;
  }
  options.attention = attentionFrom(s, attentionLevels, used);
  for (const [key, option] of [
    ['VAE Decoder', 'vaeDecoder'],
    ['VAE Encoder', 'vaeEncoder'],
  ] as const) {
    const v = take(key);
    if (v !== undefined) options[option] = vaeMethod(key, v);
  }
  const hires = hiresFrom(s, options, attentionLevels, used, reasons);
  if (hires) options.hires = hires;
  if (TILED_DIFFUSION_KEY in s) {
    try {
      options.tiling = tilingFromInfotext(s);
      used.add(TILED_DIFFUSION_KEY);
    } catch (e) {
      reasons.set(TILED_DIFFUSION_KEY, (e as Error).message.replace(/^infotext: /, ''));
    }
  }
  // Without a hires fix, a denoising strength or mask blur means image-to-image, which needs the init image (and mask) again.
  const imageToImage: ParametersAsOptions['imageToImage'] = {};
  if (!hires && 'Denoising strength' in s) imageToImage.strength = number('Denoising strength', s['Denoising strength']!, false);
  if ('Mask blur' in s) imageToImage.maskBlur = number('Mask blur', s['Mask blur']!, false);
  const up = sdUpscaleFromInfotext(s);
  if (up?.options) imageToImage.sdUpscale = up.options;
  else if (up?.missing) for (const k of Object.keys(s).filter(isSdUpscaleKey)) reasons.set(k, up.missing);
  // The LoRAs are applied from the prompt's `<lora:name:w>` tags (which our infotext always has, as A1111's does).
  const hashes = s['Lora hashes'];
  if (hashes !== undefined && loraHashNames(hashes).every((name) => options.prompt.includes(`<lora:${name}:`) || options.prompt.includes(`<lora:${name}>`))) used.add('Lora hashes');
  const notApplied = Object.keys(s)
    .filter((k) => !used.has(k) && !INFORMATIONAL.has(k))
    .map((k) => (reasons.has(k) ? `${k} (${reasons.get(k)!})` : k));
  return { options, model: s.Model, notApplied, ...(Object.keys(imageToImage).length > 0 ? { imageToImage } : {}) };
}

/** A1111's `VAE Decoder` / `VAE Encoder` value (Full or TAESD). */
function vaeMethod(key: string, v: string): VaeMethod {
  const m = (Object.keys(A1111_VAE_METHODS) as VaeMethod[]).find((k) => A1111_VAE_METHODS[k].toLowerCase() === v.toLowerCase());
  if (!m) throw new Error(`parameters: "${key}: ${v}" is not one of ${Object.values(A1111_VAE_METHODS).join(', ')}`);
  return m;
}

/**
 * A1111 1.9+ writes the schedule apart from the sampler (`Sampler: Euler, Schedule type: SGM
 * Uniform`): Automatic is the sampler's own, Karras its Karras sigmas, SGM Uniform / Uniform a
 * timestep spacing; the others (Exponential, …) and any the sampler cannot take are not applied.
 */
function scheduleFrom(schedule: string | undefined, o: GenerateOptions, used: Set<string>, reasons: Map<string, string>): void {
  if (schedule === undefined) return;
  const sampler = o.sampler as SamplerName;
  const spacing = spacingOfScheduleType(schedule);
  const fits = schedule === 'Automatic' || (schedule === 'Karras' ? KARRAS_SAMPLERS.includes(sampler) : spacing !== undefined && !CONSISTENCY_SAMPLERS.includes(sampler));
  if (!fits) {
    const offered = spacing !== undefined || schedule === 'Karras' ? `the ${sampler} sampler has its own schedule` : `offered: Automatic, Karras, ${Object.values(SCHEDULE_TYPES).join(', ')}`;
    reasons.set('Schedule type', `"${schedule}" is not applied (${offered}): the sampler's schedule used`);
    return;
  }
  used.add('Schedule type');
  if (schedule === 'Karras') o.karras = true;
  if (spacing !== undefined) o.timestepSpacing = spacing;
}

/** The names in A1111's `Lora hashes: "name: hash, name2: hash2"`. */
function loraHashNames(hashes: string): string[] {
  return hashes
    .split(',')
    .map((item) => item.slice(0, item.lastIndexOf(':')).trim())
    .filter((name) => name !== '');
}

/** A1111's hires fix keys; undefined when the image had none. */
function hiresFrom(s: Readonly<Record<string, string>>, o: GenerateOptions, attentionLevels: readonly number[], used: Set<string>, reasons: Map<string, string>): HiresOptions | undefined {
  let scale: number | undefined;
  if ('Hires upscale' in s) scale = number('Hires upscale', s['Hires upscale']!, false);
  else if ('Hires resize' in s) {
    // A1111 writes `Hires resize: 1024x1536` when a target size was asked for instead of a scale.
    const m = /^(\d+)x(\d+)$/.exec(s['Hires resize']!);
    const sx = m && o.width ? Number(m[1]) / o.width : NaN;
    const sy = m && o.height ? Number(m[2]) / o.height : NaN;
    if (!(sx === sy && sx >= 1)) {
      reasons.set('Hires resize', 'only a resize by the same factor on both sides is offered');
      return undefined;
    }
    scale = sx;
    used.add('Hires resize');
  }
  if (scale === undefined) return undefined;
  used.add('Hires upscale');
  const hires: HiresOptions = { scale, denoise: DEFAULT_HIRES_DENOISE, upscaler: 'latent' };
  if ('Denoising strength' in s) {
    hires.denoise = number('Denoising strength', s['Denoising strength']!, false);
    used.add('Denoising strength');
  }
  // A1111 leaves `Hires steps` out (or writes 0) for "as many as the first pass".
  const steps = s['Hires steps'] === undefined ? 0 : number('Hires steps', s['Hires steps'], true);
  if (steps > 0) hires.steps = steps;
  used.add('Hires steps');
  const upscaler = s['Hires upscaler'];
  if (upscaler !== undefined) {
    const ours = HIRES_UPSCALERS.find((u) => A1111_UPSCALER_NAMES[u].toLowerCase() === upscaler.toLowerCase());
    if (ours) {
      hires.upscaler = ours;
      used.add('Hires upscaler');
    } else reasons.set('Hires upscaler', `"${upscaler}" is not offered here (${HIRES_UPSCALERS.map((u) => A1111_UPSCALER_NAMES[u]).join(', ')}): Latent used`);
  }
  const second = hiresAttentionFrom(s, attentionLevels, used);
  if (second) hires.attention = second;
  return hires;
}

/** A1111's default hires denoising strength, for an infotext that leaves it out. */
const DEFAULT_HIRES_DENOISE = 0.7;

/** The second pass's attention where the infotext says it differs from the first pass's. */
function hiresAttentionFrom(s: Readonly<Record<string, string>>, attentionLevels: readonly number[], used: Set<string>): AttentionOptions | undefined {
  for (const k of Object.keys(s)) if (k.startsWith('Hires ToDo ')) used.add(k);
  const tome = s['Hires token merging ratio'];
  if (tome !== undefined) used.add('Hires token merging ratio');
  const ratio = tome === undefined ? undefined : number('Hires token merging ratio', tome, false);
  if (ratio !== undefined && ratio > 0) return { method: 'tome', ratio };
  const todo = hiresTodoFromInfotext(s, attentionLevels);
  if (todo !== 'same') return todo ?? { method: 'dense' };
  return ratio === 0 ? { method: 'dense' } : undefined;
}

const TODO_KEYS = ['ToDo factor', 'ToDo max depth', 'ToDo disable after', 'ToDo level 2 factor', 'ToDo mode'];

/** ToDo (the A1111 extension's keys, see todo-infotext.ts) or ToMe; neither means dense attention. */
function attentionFrom(s: Readonly<Record<string, string>>, attentionLevels: readonly number[], used: Set<string>): AttentionOptions {
  const todo = todoFromInfotext(s, attentionLevels);
  TODO_KEYS.forEach((k) => k in s && used.add(k));
  if (todo !== undefined) {
    if (!(TODO_MODES as readonly string[]).includes(todo.mode ?? 'nearest')) throw new Error(`parameters: "ToDo mode: ${todo.mode}" is not one of ${TODO_MODES.join(', ')}`);
    return todo;
  }
  const tome = s['Token merging ratio'];
  if (tome === undefined) return { method: 'dense' };
  used.add('Token merging ratio');
  return { method: 'tome', ratio: number('Token merging ratio', tome, false) };
}
