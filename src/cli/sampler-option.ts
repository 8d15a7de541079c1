/** `--sampler` accepts our names and AUTOMATIC1111's (`"DPM++ 2M Karras"`), as resolveSampler does; `--karras` beside it. */
import { InvalidArgumentError, Option } from 'commander';
import type { SamplerName } from '../scheduler/index.js';
import { resolveSampler } from '../scheduler/names.js';

export type SamplerChoice = ReturnType<typeof resolveSampler>;

export function parseSamplerOption(v: string): SamplerChoice {
  try {
    return resolveSampler(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

export const karrasOption = (): Option => new Option('--karras', 'Karras noise schedule (all samplers but ddim, pndm, lcm and tcd)');

/** The sampler and its Karras schedule from `--sampler` and `--karras` (an A1111 name such as "DPM++ 2M Karras" sets it too). */
export function samplerFromFlags(f: { sampler?: SamplerChoice; karras?: boolean }): { sampler?: SamplerName; karras?: boolean } {
  return { sampler: f.sampler?.sampler, karras: f.karras ?? f.sampler?.karras };
}
