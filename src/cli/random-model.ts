/** `todo-sd random-model`: a model folder in the diffusers layout with random weights. */
import { Command, Option } from 'commander';
import { ARCHITECTURES, TINY_VAE_ARCHITECTURES } from '../models/architectures.js';
import { writeRandomModel } from '../models/random-model.js';
import { writeRandomTinyVAE, writeRandomTinyVAEFiles } from '../models/random-taesd.js';
import { writeRandomCheckpoint } from '../models/single-file/random-checkpoint.js';
import { parseIntOption } from './options.js';

type Writer = typeof writeRandomModel;

function writerFor(arch: string, format: 'diffusers' | 'single-file'): Writer {
  if ((TINY_VAE_ARCHITECTURES as readonly string[]).includes(arch)) return format === 'single-file' ? writeRandomTinyVAEFiles : writeRandomTinyVAE;
  return format === 'single-file' ? writeRandomCheckpoint : writeRandomModel;
}

export function registerRandomModel(program: Command): void {
  program
    .command('random-model')
    .description('write a model with random weights and the real SD 1.5 / 2.1 / XL configs (a diffusers folder or a single-file checkpoint), or a TAESD, for tests and speed benchmarks')
    .addOption(new Option('--arch <arch>', 'architecture (taesd, taesd-tiny: a TAESD alone)').choices([...ARCHITECTURES, ...TINY_VAE_ARCHITECTURES]).default('sd15'))
    .addOption(
      new Option('--format <format>', "diffusers folder, or one LDM .safetensors checkpoint with its .yaml (a TAESD: madebyollin's NAME_decoder / NAME_encoder .safetensors)")
        .choices(['diffusers', 'single-file'])
        .default('diffusers'),
    )
    .requiredOption('--out <path>', 'output folder (must not exist, or be empty); FILE.safetensors for --format single-file (NAME_decoder.safetensors for a TAESD)')
    .option('--seed <n>', 'seed of the random weights', parseIntOption('--seed', 0), 0)
    .addOption(new Option('--dtype <dtype>', 'weight dtype on disk (default: fp16 for sd15/sd21/sdxl, fp32 for the others)').choices(['fp32', 'fp16']))
    .action((o: { arch: string; format: 'diffusers' | 'single-file'; out: string; seed: number; dtype?: 'fp32' | 'fp16' }) => {
      const t0 = Date.now();
      const log = (m: string): void => void process.stderr.write(`${m}\n`);
      writerFor(o.arch, o.format)(o.out, o.arch, { seed: o.seed, dtype: o.dtype, onProgress: (c) => log(`writing ${c}…`) });
      log(`wrote a random ${o.arch} model to ${o.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    });
}
