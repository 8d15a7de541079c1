/** `--sampler` accepts our names and AUTOMATIC1111's (`"DPM++ 2M Karras"`), as resolveSampler does. */
import { InvalidArgumentError } from 'commander';
import { resolveSampler } from '../scheduler/names.js';

export type SamplerChoice = ReturnType<typeof resolveSampler>;

export function parseSamplerOption(v: string): SamplerChoice {
  try {
    return resolveSampler(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}
