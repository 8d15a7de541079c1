/**
 * Generation parameters in AUTOMATIC1111's PNG `parameters` text, which A1111, ComfyUI,
 * stable-diffusion.cpp and image browsers read back:
 *   prompt \n Negative prompt: … \n Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x512, Model: …
 */
import type { AttentionOptions } from '../attention/options.js';
import type { SamplerName } from '../scheduler/index.js';
import { a1111SamplerName } from '../scheduler/names.js';
import { todoInfotext } from './todo-infotext.js';

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
  /** `name: shorthash, …` of the LoRAs used (A1111's `Lora hashes`). */
  loraHashes?: string;
}

/** A1111 quotes a value that holds a comma, colon or quote, JSON-style. */
function value(v: string | number): string {
  const s = String(v);
  return /[,:"]/.test(s) ? JSON.stringify(s) : s;
}

export function a1111Parameters(p: ParameterSource): string {
  const fields: [string, string | number][] = [
    ['Steps', p.steps],
    ['Sampler', a1111SamplerName(p.sampler, p.karras)],
    ['CFG scale', p.cfg],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model', p.model],
  ];
  if (p.clipSkip > 1) fields.push(['Clip skip', p.clipSkip]);
  const a = p.attention;
  if (a.method === 'todo') fields.push(...todoInfotext(a, p.attentionLevels, p.latent));
  if (a.method === 'tome') fields.push(['Token merging ratio', a.ratio]);
  if (p.loraHashes) fields.push(['Lora hashes', p.loraHashes]);
  fields.push(['Version', 'todo-sd']);
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt}`);
  lines.push(fields.map(([k, v]) => `${k}: ${value(v)}`).join(', '));
  return lines.join('\n');
}
