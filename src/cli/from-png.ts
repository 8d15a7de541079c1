/**
 * `generate --from-png`: the options a PNG was made with, under the flags given explicitly on
 * the command line (a flag the user typed wins; defaults do not).
 */
import type { Command } from 'commander';
import { optionsFromParameters } from '../pipeline/from-parameters.js';
import { parseParameters, type ParsedParameters } from '../pipeline/parameters.js';
import type { GenerateOptions } from '../pipeline/stable-diffusion.js';
import { readPngParameters } from './png-parameters.js';

/** The command-line flags (commander's attribute names) that set each option. */
const FLAGS: Partial<Record<keyof GenerateOptions, string[]>> = {
  prompt: ['prompt'],
  negativePrompt: ['negativePrompt'],
  width: ['width'],
  height: ['height'],
  steps: ['steps'],
  cfg: ['cfg'],
  seed: ['seed'],
  sampler: ['sampler'],
  karras: ['sampler', 'karras'],
  attention: ['todo', 'todoMode', 'todoStop', 'todoLevel2', 'tome'],
  clipSkip: ['clipSkip'],
  promptSyntax: ['promptSyntax'],
};

/** The parameters stored in `file`; fails (before any model is loaded) when it has none. */
export function readFromPng(file: string): ParsedParameters & { file: string } {
  return { ...parseParameters(readPngParameters(file)), file };
}

/** `model`: the loaded model's name and its U-Net's attention levels (ToDo's depth is read against them). */
export function mergeFromPng(
  png: ReturnType<typeof readFromPng>,
  fromFlags: GenerateOptions,
  cmd: Command,
  log: (m: string) => void,
  loaded: { name: string; attentionLevels: readonly number[] },
): GenerateOptions {
  const { file } = png;
  const { options, model, notApplied } = optionsFromParameters(png, loaded.attentionLevels);
  const explicit = (key: keyof GenerateOptions): boolean => (FLAGS[key] ?? []).some((flag) => cmd.getOptionValueSource(flag) === 'cli');
  const merged: GenerateOptions = { ...fromFlags };
  for (const key of Object.keys(options) as (keyof GenerateOptions)[]) {
    if (!explicit(key)) Object.assign(merged, { [key]: options[key] });
  }
  if (model !== undefined && model !== loaded.name) log(`${file} was made with model "${model}"; regenerating with "${loaded.name}" gives a different image`);
  if (notApplied.length > 0) log(`${file}: settings not applied: ${notApplied.join(', ')}`);
  return merged;
}
