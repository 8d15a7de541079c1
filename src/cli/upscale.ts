/** `todo-sd upscale`: AUTOMATIC1111's Extras upscaling of pictures (PNG, JPEG, WebP, …), with an upscaler model, Lanczos or Nearest. */
import { basename } from 'node:path';
import type { Command } from 'commander';
import { writeFileAtomic } from '../io/atomic.js';
import { decodeImage, readImageText } from '../io/image.js';
import { encodePng } from '../io/png.js';
import { extrasInfotext, upscaleExtras } from '../pipeline/extras.js';
import { checkOutput, outputPaths, readInputFile } from './generate.js';
import { parseFloatOption, parseIntOption } from './options.js';
import { Progress } from './progress.js';
import { providerOption, precisionOption, runtimeFromFlags, type RuntimeFlags } from './runtime-flags.js';
import { imageUpscaler } from './upscaler-option.js';
import { UserError } from '../errors.js';

interface UpscaleFlags extends RuntimeFlags {
  model: string;
  upscalerDir?: string;
  scale?: number;
  width?: number;
  height?: number;
  crop?: boolean;
  model2?: string;
  model2Visibility: number;
  tile: number;
  tileOverlap: number;
  out: string;
  json?: boolean;
}

export function registerUpscale(program: Command): void {
  program
    .command('upscale')
    .description("enlarge images with an upscaler model (ESRGAN, Real-ESRGAN), Lanczos or Nearest, as AUTOMATIC1111's Extras tab")
    .argument('<images...>', 'PNG files')
    .requiredOption('-m, --model <file|name>', 'upscaler: a model file (.pth, .pt, .safetensors), a model name in --upscaler-dir ("R-ESRGAN 4x+", a file name without extension), lanczos, nearest or none')
    .option('--upscaler-dir <dir>', "folder of upscaler models, or a models folder with A1111's ESRGAN/ and RealESRGAN/")
    .option('--scale <x>', "scale by x (default: the model's own scale; 2 for lanczos and nearest)", parseFloatOption('--scale', 0.01, 16))
    .option('-W, --width <px>', 'upscale to this width (with --height) instead of by a scale', parseIntOption('--width', 8, 16384))
    .option('-H, --height <px>', 'upscale to this height (with --width)', parseIntOption('--height', 8, 16384))
    .option('--crop', 'with --width/--height: crop to exactly that size around the centre')
    .option('--model-2 <file|name>', 'a second upscaler whose result is blended in')
    .option('--model-2-visibility <v>', 'how much of the second upscaler shows, 0 to 1', parseFloatOption('--model-2-visibility', 0, 1), 0.5)
    .option('--tile <px>', 'largest tile side in input pixels (0: the whole image at once)', parseIntOption('--tile', 0), 512)
    .option('--tile-overlap <px>', 'least overlap between tiles in input pixels', parseIntOption('--tile-overlap', 0), 32)
    .option('-o, --out <file.png>', 'output PNG (out-0.png, out-1.png, … for several images)', 'upscaled.png')
    .option('--json', 'print a JSON summary on stdout')
    .addOption(providerOption())
    .addOption(precisionOption())
    .option('--threads <n>', 'CPU threads per operator (default: all cores)', parseIntOption('--threads', 1, 1024))
    .action(async (inputs: string[], f: UpscaleFlags) => {
      checkOutput(f.out);
      if ((f.width === undefined) !== (f.height === undefined)) throw new UserError('--width and --height go together (or give --scale)');
      if (f.width !== undefined && f.scale !== undefined) throw new UserError('give --scale or --width/--height, not both');
      if (f.crop && f.width === undefined) throw new UserError('--crop needs --width and --height');
      const images = await Promise.all(
        inputs.map(async (p) => {
          const bytes = readInputFile(p, 'input');
          return { path: p, image: await decodeImage(bytes, { what: p }), text: await readImageText(bytes, { what: p }) };
        }),
      );
      const runtime = runtimeFromFlags(f);
      const dirs = f.upscalerDir ? [f.upscalerDir] : [];
      const upscaler = await imageUpscaler(f.model, dirs, runtime);
      const upscaler2 = f.model2 ? await imageUpscaler(f.model2, dirs, runtime) : undefined;
      const progress = new Progress(process.stderr);
      const paths = outputPaths(f.out, images.length);
      const results = [];
      for (const [i, { path, image, text }] of images.entries()) {
        const r = await upscaleExtras(image, {
          mode: f.width === undefined ? 'by' : 'to',
          by: f.scale ?? (typeof upscaler === 'object' ? upscaler.scale : 2),
          width: f.width,
          height: f.height,
          crop: f.crop,
          upscaler,
          upscaler2,
          upscaler2Visibility: f.model2Visibility,
          upscale: { tile: f.tile, overlap: f.tileOverlap, onTile: (done, total) => progress.update(done, total, `${basename(path)}`.slice(0, 24), 'tiles') },
        });
        progress.finish(`${basename(path)}: ${image.width}x${image.height} → ${r.image.width}x${r.image.height}`);
        // The generation parameters stay with the picture, as A1111 keeps them; the upscale is recorded apart.
        const postprocessing = extrasInfotext(r.info);
        writeFileAtomic(paths[i]!, encodePng(r.image, { ...(text.parameters ? { parameters: text.parameters } : {}), ...(postprocessing ? { postprocessing } : {}) }));
        results.push({ file: paths[i], from: path, width: r.image.width, height: r.image.height, postprocessing });
      }
      for (const u of [upscaler, upscaler2]) if (typeof u === 'object') await u.dispose();
      if (f.json) process.stdout.write(`${JSON.stringify({ images: results }, null, 2)}\n`);
      else process.stderr.write(`wrote ${results.map((r) => `${basename(r.file!)} (${r.width}x${r.height})`).join(', ')}\n`);
    });
}
