/** The `todo-sd` command line: its commands, parsed and run. */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { registerBench } from './bench.js';
import { registerGenerate } from './generate.js';
import { registerInfo } from './info.js';
import { registerRandomModel } from './random-model.js';
import { registerServe } from './serve.js';
import { registerUpscale } from './upscale.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('todo-sd')
  .description('Stable Diffusion on onnxruntime, with ToDo token downsampling for fast high-resolution generation')
  .version(pkg.version)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

registerGenerate(program);
registerInfo(program);
registerRandomModel(program);
registerBench(program);
registerServe(program);
registerUpscale(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Commander has printed its message (unknown option, missing argument, --help, --version).
    process.exitCode = e.exitCode;
  } else {
    process.stderr.write(`todo-sd: error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
