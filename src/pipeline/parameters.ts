/**
 * Generation parameters in AUTOMATIC1111's PNG `parameters` text, which A1111, ComfyUI,
 * stable-diffusion.cpp and image browsers read back:
 *   prompt \n Negative prompt: … \n Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x512, Model: …
 * Written by a1111Parameters, read by parseParameters (A1111's parse_generation_parameters rules).
 */
import type { AttentionOptions } from '../attention/options.js';
import type { PromptSyntax } from '../prompt/index.js';
import type { TimestepSpacing } from '../scheduler/config.js';
import type { SamplerName } from '../scheduler/index.js';
import { a1111SamplerName, SCHEDULE_TYPES } from '../scheduler/names.js';
import { A1111_UPSCALER_NAMES, type HiresUpscaler } from './hires.js';
import type { VaeMethod } from './model-parts.js';
import type { Tiling } from './multidiffusion.js';
import { TILED_DIFFUSION_KEY, tilingInfotext } from './tiled-infotext.js';
import { hiresTodoInfotext, todoInfotext } from './todo-infotext.js';

export interface ParameterSource {
  prompt: string;
  negativePrompt: string;
  steps: number;
  sampler: SamplerName;
  karras: boolean;
  /** A spacing asked for (written as A1111's `Schedule type`); absent: the model's own. */
  timestepSpacing?: TimestepSpacing;
  /** tcd's γ. */
  eta?: number;
  cfg: number;
  seed: number;
  width: number;
  height: number;
  model: string;
  clipSkip: number;
  attention: AttentionOptions;
  /** The U-Net's resolution levels with self-attention and the latent grid: ToDo's fields depend on them. */
  attentionLevels: readonly number[];
  latent: readonly [number, number];
  /** `name: shorthash, …` of the LoRAs used (A1111's `Lora hashes`). */
  loraHashes?: string;
  /** Written only when 'plain' (A1111's syntax is the default, as in A1111). */
  promptSyntax?: PromptSyntax;
  /** Image-to-image strength. */
  strength?: number;
  mask?: { blur: number };
  hires?: { scale: number; steps: number; denoise: number; upscaler: HiresUpscaler };
  /** The attention each pass used (ToDo's 'auto' resolved, for the view's size when tiled). */
  passes?: { attention: AttentionOptions }[];
  /** Which VAE decoded, and encoded the init image if one was encoded (A1111 writes only TAESD). */
  vaeDecoder?: VaeMethod;
  vaeEncoder?: VaeMethod;
  /** MultiDiffusion's views. */
  tiling?: Tiling;
}

/** A value written as it is: A1111 writes a dict as its JSON (json.dumps), unquoted. */
interface Verbatim {
  verbatim: string;
}

/** A1111's names of the VAE methods (its sd_vae_decode_method / sd_vae_encode_method values). */
export const A1111_VAE_METHODS: Record<VaeMethod, string> = { full: 'Full', taesd: 'TAESD' };

/** A1111 quotes a value that holds a comma, colon or newline, JSON-style (a quote too, so it reads back). */
function value(v: string | number | Verbatim): string {
  if (typeof v === 'object') return v.verbatim;
  const s = String(v);
  return /[,:"\n]/.test(s) ? JSON.stringify(s) : s;
}

export function a1111Parameters(p: ParameterSource): string {
  const fields: [string, string | number | Verbatim][] = [
    ['Steps', p.steps],
    ['Sampler', a1111SamplerName(p.sampler, p.karras)],
    ...(p.timestepSpacing ? [['Schedule type', SCHEDULE_TYPES[p.timestepSpacing]] as [string, string]] : []),
    ...(p.eta !== undefined ? [['Eta', p.eta] as [string, number]] : []),
    ['CFG scale', p.cfg],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model', p.model],
  ];
  if (p.clipSkip > 1) fields.push(['Clip skip', p.clipSkip]);
  const a = p.passes?.[0]?.attention ?? p.attention;
  const firstTodo = a.method === 'todo' ? todoInfotext(a, p.attentionLevels, p.latent) : [];
  fields.push(...firstTodo);
  if (a.method === 'tome') fields.push(['Token merging ratio', a.ratio]);
  if (p.loraHashes) fields.push(['Lora hashes', p.loraHashes]);
  if (p.promptSyntax === 'plain') fields.push(['Prompt syntax', 'plain']);
  const strength = p.hires?.denoise ?? p.strength;
  if (strength !== undefined) fields.push(['Denoising strength', strength]);
  if (p.mask) fields.push(['Mask blur', p.mask.blur]);
  if (p.tiling) fields.push([TILED_DIFFUSION_KEY, { verbatim: tilingInfotext(p.tiling) }]);
  if (p.hires) {
    fields.push(['Hires upscale', p.hires.scale], ['Hires steps', p.hires.steps], ['Hires upscaler', A1111_UPSCALER_NAMES[p.hires.upscaler]]);
    // The second pass's attention where it differs from the first's (ToDo 'auto' is resolved per pass).
    const second = p.passes?.[1]?.attention ?? a;
    const scale = p.hires.scale;
    fields.push(...hiresTodoInfotext(firstTodo, second.method === 'todo' ? second : undefined, p.attentionLevels, [Math.round(p.latent[0] * scale), Math.round(p.latent[1] * scale)]));
    if (second.method === 'tome' && (a.method !== 'tome' || a.ratio !== second.ratio)) fields.push(['Hires token merging ratio', second.ratio]);
    if (second.method !== 'tome' && a.method === 'tome') fields.push(['Hires token merging ratio', 0]);
  }
  if (p.vaeDecoder === 'taesd') fields.push(['VAE Decoder', A1111_VAE_METHODS.taesd]);
  if (p.vaeEncoder === 'taesd') fields.push(['VAE Encoder', A1111_VAE_METHODS.taesd]);
  fields.push(['Version', 'todo-sd']);
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt}`);
  lines.push(fields.map(([k, v]) => `${k}: ${value(v)}`).join(', '));
  return lines.join('\n');
}

/** A parameters text with `fields` added to its settings line, before `Version` (which stays last, as A1111 writes it). */
export function withFields(text: string, fields: readonly [string, string | number][]): string {
  const lines = text.split('\n');
  const last = lines.pop()!;
  const extra = fields.map(([k, v]) => `${k}: ${value(v)}`).join(', ');
  const at = last.lastIndexOf(', Version: ');
  lines.push(at < 0 ? `${last}, ${extra}` : `${last.slice(0, at)}, ${extra}${last.slice(at)}`);
  return lines.join('\n');
}

export interface ParsedParameters {
  prompt: string;
  negativePrompt: string;
  /** The `key: value` settings of the last line, quoted values unquoted (`Size` stays `512x512`). */
  settings: Record<string, string>;
}

/**
 * A1111's re_param: `key: value` pairs, a value either JSON-quoted or running to the next comma;
 * also a flat JSON object (an extension's dict, such as Tiled Diffusion's), which A1111's own
 * reader cuts at its first comma.
 */
const PARAM = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|\{[^{}]*\}|[^,]*)(?:,|$)/gu;

function unquote(v: string): string {
  if (v.length < 2 || !v.startsWith('"') || !v.endsWith('"')) return v;
  try {
    const parsed: unknown = JSON.parse(v);
    return typeof parsed === 'string' ? parsed : v;
  } catch {
    return v;
  }
}

/**
 * Reads a `parameters` text back, as A1111's parse_generation_parameters: the last line holds
 * the settings when it has at least 3 `key: value` pairs (else it is prompt text); lines up to
 * `Negative prompt:` are the prompt, the rest the negative prompt; each line is trimmed.
 */
export function parseParameters(text: string): ParsedParameters {
  if (typeof text !== 'string') throw new Error('parseParameters: expected the text of a PNG "parameters" chunk');
  const lines = text.trim().split('\n');
  let last = lines.pop()!;
  if ([...last.matchAll(PARAM)].length < 3) {
    lines.push(last);
    last = '';
  }
  let prompt = '';
  let negativePrompt = '';
  let inNegative = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith('Negative prompt:')) {
      inNegative = true;
      line = line.slice('Negative prompt:'.length).trim();
    }
    if (inNegative) negativePrompt += (negativePrompt === '' ? '' : '\n') + line;
    else prompt += (prompt === '' ? '' : '\n') + line;
  }
  const settings: Record<string, string> = {};
  for (const m of last.matchAll(PARAM)) settings[m[1]!] = unquote(m[2]!);
  return { prompt, negativePrompt, settings };
}
