/**
 * Generation options from a PNG's `parameters` (ours or AUTOMATIC1111's), so that an image can
 * be made again: the settings this pipeline understands become GenerateOptions, the others are
 * listed so a caller can say what was not applied.
 */
import type { AttentionOptions } from '../attention/options.js';
import { TODO_MODES, type TodoMode } from '../attention/todo.js';
import { PROMPT_SYNTAXES, type PromptSyntax } from '../prompt/index.js';
import { resolveSampler } from '../scheduler/names.js';
import type { ParsedParameters } from './parameters.js';
import type { GenerateOptions } from './stable-diffusion.js';

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

export function optionsFromParameters(p: ParsedParameters): ParametersAsOptions {
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
  options.attention = attentionFrom(take);
  const notApplied = Object.keys(s).filter((k) => !used.has(k) && !INFORMATIONAL.has(k));
  return { options, model: s.Model, notApplied };
}

/** ToDo / ToMe as a1111Parameters writes them; no such key means dense attention. */
function attentionFrom(take: (key: string) => string | undefined): AttentionOptions {
  const factor = take('ToDo factor');
  const mode = take('ToDo mode');
  const level2 = take('ToDo level 2 factor');
  const stopAt = take('ToDo stop at');
  const tome = take('Token merging ratio');
  if (factor !== undefined) {
    if (mode !== undefined && !(TODO_MODES as readonly string[]).includes(mode)) throw new Error(`parameters: "ToDo mode: ${mode}" is not one of ${TODO_MODES.join(', ')}`);
    return {
      method: 'todo',
      factor: factor === 'auto' ? 'auto' : number('ToDo factor', factor, true),
      mode: (mode ?? 'nearest') as TodoMode,
      level2Factor: level2 === undefined ? 1 : number('ToDo level 2 factor', level2, true),
      stopAt: stopAt === undefined ? 1 : number('ToDo stop at', stopAt, false),
    };
  }
  if (tome !== undefined) return { method: 'tome', ratio: number('Token merging ratio', tome, false) };
  return { method: 'dense' };
}
