/**
 * Generation parameters in AUTOMATIC1111's PNG `parameters` text, which A1111, ComfyUI,
 * stable-diffusion.cpp and image browsers read back:
 *   prompt \n Negative prompt: … \n Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x512, Model: …
 */
import type { AttentionOptions } from '../attention/options.js';
import type { SamplerName } from '../scheduler/index.js';
import { A1111_UPSCALER_NAMES, type HiresUpscaler } from './hires.js';
import { todoInfotext } from './todo-infotext.js';

const A1111_SAMPLERS: Record<SamplerName, string> = {
  euler: 'Euler',
  'euler-a': 'Euler a',
  ddim: 'DDIM',
  pndm: 'PLMS',
  'dpmpp-2m': 'DPM++ 2M',
};

export interface ParameterSource {
  prompt: string;
  negativePrompt: string;
  steps: number;
  sampler: SamplerName;
  karras: boolean;
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
  /** Image-to-image strength. */
  strength?: number;
  mask?: { blur: number };
  hires?: { scale: number; steps: number; denoise: number; upscaler: HiresUpscaler };
  /** The attention each pass used (ToDo's 'auto' resolved). */
  passes?: { attention: AttentionOptions }[];
}

/** A1111 quotes a value that holds a comma, colon or quote, JSON-style. */
function value(v: string | number): string {
  const s = String(v);
  return /[,:"]/.test(s) ? JSON.stringify(s) : s;
}

export function a1111Parameters(p: ParameterSource): string {
  const fields: [string, string | number][] = [
    ['Steps', p.steps],
    ['Sampler', A1111_SAMPLERS[p.sampler] + (p.karras ? ' Karras' : '')],
    ['CFG scale', p.cfg],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model', p.model],
  ];
  if (p.clipSkip > 1) fields.push(['Clip skip', p.clipSkip]);
  const a = p.attention;
  if (a.method === 'todo') fields.push(...todoInfotext(a, p.attentionLevels, p.latent));
  if (a.method === 'tome') fields.push(['Token merging ratio', a.ratio]);
  const strength = p.hires?.denoise ?? p.strength;
  if (strength !== undefined) fields.push(['Denoising strength', strength]);
  if (p.mask) fields.push(['Mask blur', p.mask.blur]);
  if (p.hires) {
    fields.push(['Hires upscale', p.hires.scale], ['Hires steps', p.hires.steps], ['Hires upscaler', A1111_UPSCALER_NAMES[p.hires.upscaler]]);
    const second = p.passes?.[1]?.attention;
    // Written like the extension's `ToDo factor` (a Python float: "2.0").
    if (second?.method === 'todo') fields.push(['Hires ToDo factor', Number.isInteger(second.factor) ? Number(second.factor).toFixed(1) : String(second.factor)]);
    if (second?.method === 'tome') fields.push(['Hires token merging ratio', second.ratio]);
  }
  fields.push(['Version', 'todo-sd']);
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt}`);
  lines.push(fields.map(([k, v]) => `${k}: ${value(v)}`).join(', '));
  return lines.join('\n');
}
