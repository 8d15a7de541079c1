/**
 * `generate --from-png`: the options a PNG was made with, under the flags given explicitly on
 * the command line (a flag the user typed wins; defaults do not).
 */
import type { Command } from 'commander';
import { optionsFromParameters } from '../pipeline/from-parameters.js';
import { isSdUpscaleKey } from '../pipeline/tiled-infotext.js';
import type { HiresOptions } from '../pipeline/hires.js';
import type { VaeMethod } from '../pipeline/model-parts.js';
import { A1111_VAE_METHODS, parseParameters, type ParsedParameters } from '../pipeline/parameters.js';
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
  timestepSpacing: ['sampler', 'timestepSpacing'],
  eta: ['sampler', 'eta'],
  attention: ['todo', 'todoMode', 'todoStop', 'todoLevel2', 'tome'],
  clipSkip: ['clipSkip'],
  promptSyntax: ['promptSyntax'],
  vaeDecoder: ['vaeDecoder'],
  vaeEncoder: ['vaeEncoder'],
  tiling: ['tiledDiffusion', 'tileWindow', 'tileStride', 'tileBatch', 'circular'],
  sdUpscale: ['sdUpscale', 'sdUpscaleOverlap', 'sdUpscaleUpscaler', 'sdUpscaleBatch', 'seamFix', 'seamFixWidth', 'seamFixPadding', 'seamFixDenoise'],
};

/** Where the VAE methods an infotext names come from, for the note when one is not at hand. */
const VAE_METHOD_FIX: Record<VaeMethod, string> = { full: "the model's own VAE: leave out a TAESD --vae", taesd: 'a TAESD: give --taesd FILE|DIR' };

/** The parameters stored in `file`; fails (before any model is loaded) when it has none. */
export function readFromPng(file: string): ParsedParameters & { file: string } {
  return { ...parseParameters(readPngParameters(file)), file };
}

/** The hires flags over the PNG's hires fix, field by field. */
const HIRES_FLAGS: [keyof HiresOptions, string][] = [
  ['scale', 'hiresScale'],
  ['steps', 'hiresSteps'],
  ['denoise', 'hiresDenoise'],
  ['upscaler', 'hiresUpscaler'],
];

/**
 * `model`: the loaded model's name and its U-Net's attention levels (ToDo's depth is read against them).
 * `hiresFlags`: the hires fix the flags describe, used field by field where a flag was typed.
 */
export function mergeFromPng(
  png: ReturnType<typeof readFromPng>,
  fromFlags: GenerateOptions,
  hiresFlags: Partial<HiresOptions>,
  cmd: Command,
  log: (m: string) => void,
  loaded: { name: string; attentionLevels: readonly number[]; vaeMethods: readonly VaeMethod[] },
): GenerateOptions {
  const { file } = png;
  const { options, model, notApplied, imageToImage } = optionsFromParameters(png, loaded.attentionLevels);
  const given = (flag: string): boolean => cmd.getOptionValueSource(flag) === 'cli';
  const explicit = (key: keyof GenerateOptions): boolean => (FLAGS[key] ?? []).some(given);
  const merged: GenerateOptions = { ...fromFlags };
  for (const key of Object.keys(options) as (keyof GenerateOptions)[]) {
    if (key !== 'hires' && !explicit(key)) Object.assign(merged, { [key]: options[key] });
  }
  if (options.hires) merged.hires = mergeHires(options.hires, hiresFlags, given, explicit('attention'));
  const up = imageToImage?.sdUpscale;
  let skipped = notApplied.filter((k) => !(k === 'Denoising strength' && merged.initImage) && !(k === 'Mask blur' && merged.mask) && !(up && isSdUpscaleKey(k)));
  if (up && !merged.initImage) skipped = [...skipped, 'SD upscale (the image is an SD upscale: give the original picture as --init-image to apply it)'];
  else if (up && !explicit('sdUpscale')) merged.sdUpscale = up;
  if (imageToImage?.strength !== undefined) {
    if (!merged.initImage) skipped[skipped.indexOf('Denoising strength')] = 'Denoising strength (the image was made from an init image: give --init-image to apply it)';
    else if (!given('strength')) merged.strength = imageToImage.strength;
  }
  if (imageToImage?.maskBlur !== undefined && merged.mask && !given('maskBlur')) merged.mask = { ...merged.mask, blur: imageToImage.maskBlur };
  for (const [key, label] of [
    ['vaeDecoder', 'VAE Decoder'],
    ['vaeEncoder', 'VAE Encoder'],
  ] as const) {
    const method = merged[key];
    if (method === undefined || explicit(key) || loaded.vaeMethods.includes(method)) continue;
    delete merged[key];
    skipped.push(`${label} (${A1111_VAE_METHODS[method]}: needs ${VAE_METHOD_FIX[method]} to apply it)`);
  }
  if (model !== undefined && model !== loaded.name) log(`${file} was made with model "${model}"; regenerating with "${loaded.name}" gives a different image`);
  if (skipped.length > 0) log(`${file}: settings not applied: ${skipped.join(', ')}`);
  return merged;
}

/** The PNG's hires fix, each field a hires flag the user typed replaced by the flag's value. */
function mergeHires(png: HiresOptions, flags: Partial<HiresOptions>, given: (flag: string) => boolean, attentionGiven: boolean): HiresOptions {
  const h: HiresOptions = { ...png };
  for (const [field, flag] of HIRES_FLAGS) if (given(flag)) Object.assign(h, { [field]: flags[field] });
  // --hires-todo sets the second pass; --todo / --tome alone set both passes, as without --from-png.
  if (given('hiresTodo')) h.attention = flags.attention;
  else if (attentionGiven) delete h.attention;
  return h;
}

/** Warns when the LoRAs found for the PNG's `<lora:…>` tags are not the files it was made with. */
export function checkLoraHashes(png: ReturnType<typeof readFromPng>, made: string, log: (m: string) => void): void {
  const was = png.settings['Lora hashes'];
  if (was === undefined) return;
  const now = parseParameters(made).settings['Lora hashes'];
  if (now !== was) log(`${png.file}: the LoRAs differ from those the image was made with (Lora hashes were "${was}", now "${now ?? 'none'}"): the image will not be the same`);
}
