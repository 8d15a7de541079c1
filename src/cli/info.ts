/** `todo-sd info image.png`: the generation parameters stored in a PNG (ours or AUTOMATIC1111's). */
import { Command } from 'commander';
import { parseParameters } from '../pipeline/parameters.js';
import { readPngParameters } from './png-parameters.js';

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('print the generation parameters stored in a PNG (todo-sd or AUTOMATIC1111)')
    .argument('<image.png>', 'a PNG with a "parameters" text chunk')
    .option('--json', 'print the parsed record: prompt, negativePrompt, settings')
    .action((file: string, f: { json?: boolean }) => {
      const text = readPngParameters(file);
      process.stdout.write(f.json ? `${JSON.stringify(parseParameters(text), null, 2)}\n` : `${text}\n`);
    });
}
