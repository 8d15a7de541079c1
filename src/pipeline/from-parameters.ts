/**
 * Generation options from a PNG's `parameters` (ours or AUTOMATIC1111's), so that an image can
 * be made again: the settings this pipeline understands become GenerateOptions, the others are
 * listed so a caller can say what was not applied.
 */
import type { AttentionOptions } from '../attention/options.js';
import { TODO_MODES } from '../attention/todo.js';
import { PROMPT_SYNTAXES, type PromptSyntax } from '../prompt/index.js';
import { resolveSampler } from '../scheduler/names.js';
import type { ParsedParameters } from './parameters.js';
import type { GenerateOptions } from './stable-diffusion.js';
import { todoFromInfotext } from './todo-infotext.js';

export interface ParametersAsOptions {
  options: GenerateOptions;
  /** The `Model` setting, if any (the name of the model the image was made with). */
  model?: string;
  /** Settings that describe the generation but are not applied here (hires fix, LoRA hashes, …). */
  notApplied: string[];
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
  const sampler = take('Sampler');
  if (sampler !== undefined) {
    const r = resolveSampler(sampler);
    options.sampler = r.sampler;
    // A1111 1.9+ writes the schedule apart: `Sampler: DPM++ 2M, Schedule type: Karras`;
    // 'Automatic' is the sampler's own, the others (Exponential, …) are not offered here.
    const schedule = s['Schedule type'];
    if (schedule === 'Karras' || schedule === 'Automatic') used.add('Schedule type');
    options.karras = r.karras === true || schedule === 'Karras';
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
  const notApplied = Object.keys(s).filter((k) => !used.has(k) && !INFORMATIONAL.has(k));
  return { options, model: s.Model, notApplied };
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
