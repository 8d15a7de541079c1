/** `todo-sd random-model`: a model folder in the diffusers layout with random weights. */
import { Command, Option } from 'commander';
import { ARCHITECTURES, CONTROLNET_ARCHITECTURES } from '../models/architectures.js';
import { isControlNetArchitecture, writeRandomControlNet, writeRandomControlNetFile } from '../models/random-controlnet.js';
import { writeRandomModel } from '../models/random-model.js';
import { writeRandomCheckpoint } from '../models/single-file/random-checkpoint.js';
import { parseIntOption } from './options.js';

export function registerRandomModel(program: Command): void {
  program
    .command('random-model')
    .description('write a model (or a ControlNet for one) with random weights and the real SD 1.5 / 2.1 / XL configs (a diffusers folder or a single file), for tests and speed benchmarks')
    .addOption(new Option('--arch <arch>', 'architecture').choices([...ARCHITECTURES, ...CONTROLNET_ARCHITECTURES]).default('sd15'))
    .addOption(
      new Option('--format <format>', 'diffusers folder, or one .safetensors file (an LDM checkpoint with its .yaml; a ControlNet as A1111 users have it)')
        .choices(['diffusers', 'single-file'])
        .default('diffusers'),
    )
    .requiredOption('--out <path>', 'output folder (must not exist, or be empty); FILE.safetensors for --format single-file')
    .option('--seed <n>', 'seed of the random weights', parseIntOption('--seed', 0), 0)
    .addOption(new Option('--dtype <dtype>', 'weight dtype on disk (default: fp16 for sd15/sd21/sdxl, fp32 for tiny/tiny-sd2/sdxl-tiny)').choices(['fp32', 'fp16']))
    .action((o: { arch: string; format: 'diffusers' | 'single-file'; out: string; seed: number; dtype?: 'fp32' | 'fp16' }) => {
      const t0 = Date.now();
      const log = (m: string): void => void process.stderr.write(`${m}\n`);
      const opts = { seed: o.seed, dtype: o.dtype, onProgress: (c: string) => log(`writing ${c}…`) };
      if (isControlNetArchitecture(o.arch)) (o.format === 'single-file' ? writeRandomControlNetFile : writeRandomControlNet)(o.out, o.arch, opts);
      else (o.format === 'single-file' ? writeRandomCheckpoint : writeRandomModel)(o.out, o.arch, opts);
      log(`wrote a random ${o.arch} model to ${o.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    });
}
