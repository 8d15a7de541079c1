/** `todo-sd generate`: prompt in, PNG out. */
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { AttentionOptions } from '../attention/options.js';
import { TODO_MODES, type TodoMode } from '../attention/todo.js';
import { writeFileAtomic } from '../io/atomic.js';
import { decodePngRgb, encodePng } from '../io/png.js';
import { BUILTIN_MODEL_DIR, BUILTIN_MODEL_NAME } from '../models/builtin.js';
import { modelTinyVAE, PREDICTIONS, VAE_METHODS, type VaeMethod } from '../pipeline/model-parts.js';
import { LivePreview, PREVIEW_METHODS, type PreviewMethod } from '../pipeline/preview.js';
import type { TinyVAE } from '../models/taesd.js';
import { isTinyVAESource, TINY_VAE_FAMILIES, type TinyVAEFamily } from '../models/taesd-source.js';
import type { Prediction } from '../models/single-file/checkpoint.js';
import { attentionLevels } from '../models/unet.js';
import { HIRES_UPSCALERS, type HiresUpscaler } from '../pipeline/hires.js';
import { INPAINT_FILLS, type InpaintFill } from '../pipeline/inpaint.js';
import { TILING_DEFAULTS, type TilingOptions } from '../pipeline/multidiffusion.js';
import { SD_UPSCALERS, type SdUpscaleOptions, type SdUpscalerName } from '../pipeline/sd-upscale.js';
import { readLatentsFile, StableDiffusion, type GenerateOptions, type GenerateResult } from '../pipeline/stable-diffusion.js';
import { PROMPT_SYNTAXES, type PromptSyntax } from '../prompt/index.js';
import { TIMESTEP_SPACINGS, type TimestepSpacing } from '../scheduler/config.js';
import { checkLoraHashes, mergeFromPng, readFromPng } from './from-png.js';
import { parseSamplerOption, type SamplerChoice } from './sampler-option.js';
import { parseFloatOption, parseIntOption } from './options.js';
import { reporter, type Reporter } from './progress.js';
import { parseLoraOption } from './lora-option.js';
import type { LoraSpec } from '../lora/merge.js';
import { attentionFormOption, deviceLoopOption, precisionOption, providerOption, runtimeFromFlags, type RuntimeFlags } from './runtime-flags.js';

interface GenerateFlags extends RuntimeFlags {
  model?: string;
  vae?: string;
  taesd?: string;
  taesdFamily?: TinyVAEFamily;
  vaeDecoder?: VaeMethod;
  vaeEncoder?: VaeMethod;
  preview?: PreviewMethod;
  previewPath?: string;
  prediction?: Prediction;
  prompt?: string;
  fromPng?: string;
  negativePrompt?: string;
  width?: number;
  height?: number;
  steps: number;
  cfg: number;
  seed?: number;
  sampler?: SamplerChoice;
  karras?: boolean;
  timestepSpacing?: TimestepSpacing;
  eta?: number;
  batch: number;
  latents?: string;
  initImage?: string;
  strength?: number;
  mask?: string;
  maskBlur: number;
  maskInvert?: boolean;
  inpaintingFill: InpaintFill;
  hiresScale?: number;
  hiresSteps?: number;
  hiresDenoise: number;
  hiresUpscaler: HiresUpscaler;
  hiresTodo?: string;
  todo: string;
  todoMode: TodoMode;
  todoStop: number;
  todoLevel2: number;
  tome?: number;
  clipSkip: number;
  promptSyntax: PromptSyntax;
  vaeTiling: 'auto' | 'on' | 'off';
  tiledDiffusion?: boolean;
  tileWindow?: number;
  tileStride?: number;
  tileBatch?: number;
  circular?: boolean;
  sdUpscale?: number;
  sdUpscaleOverlap?: number;
  sdUpscaleUpscaler?: SdUpscalerName;
  sdUpscaleBatch?: number;
  seamFix?: 'band';
  seamFixWidth?: number;
  seamFixPadding?: number;
  seamFixDenoise?: number;
  lora: LoraSpec[];
  loraDir?: string;
  out: string;
  json?: boolean;
  jsonEvents?: boolean;
}

function parseTodo(v: string): string {
  if (v === 'off' || v === 'auto' || (/^\d+(\.\d+)?$/.test(v) && Number(v) >= 1)) return v;
  throw new InvalidArgumentError(`--todo must be off, auto or a factor >= 1 such as 1.5, 2, 3; got "${v}"`);
}

export function attentionFromFlags(f: Pick<GenerateFlags, 'todo' | 'todoMode' | 'todoStop' | 'todoLevel2' | 'tome'>): AttentionOptions {
  const todoOff = f.todo === 'off' || Number(f.todo) === 1;
  if (f.tome !== undefined) {
    if (!todoOff) throw new Error('--todo and --tome are two ways to cut attention work: choose one');
    return { method: 'tome', ratio: f.tome };
  }
  if (todoOff) return { method: 'dense' };
  return {
    method: 'todo',
    factor: f.todo === 'auto' ? 'auto' : Number(f.todo),
    mode: f.todoMode,
    level2Factor: f.todoLevel2,
    stopAt: f.todoStop,
  };
}

/** MultiDiffusion from its flags: any of them turns it on, the others keep their defaults. */
function tilingFromFlags(f: Pick<GenerateFlags, 'tiledDiffusion' | 'tileWindow' | 'tileStride' | 'tileBatch' | 'circular'>): TilingOptions | undefined {
  if (!f.tiledDiffusion && f.tileWindow === undefined && f.tileStride === undefined && f.tileBatch === undefined && !f.circular) return undefined;
  return { window: f.tileWindow, stride: f.tileStride, viewBatch: f.tileBatch, circular: f.circular ?? false };
}

/** SD upscale from its flags; its other flags without --sd-upscale are an error. */
function sdUpscaleFromFlags(f: GenerateFlags): SdUpscaleOptions | undefined {
  const seamFix = f.seamFix && { mode: f.seamFix, width: f.seamFixWidth, padding: f.seamFixPadding, denoise: f.seamFixDenoise };
  if (f.sdUpscale === undefined) {
    const stray = (['sdUpscaleOverlap', 'sdUpscaleUpscaler', 'sdUpscaleBatch', 'seamFix', 'seamFixWidth', 'seamFixPadding', 'seamFixDenoise'] as const).find((k) => f[k] !== undefined);
    if (stray) throw new Error(`--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} belongs to SD upscale: add --sd-upscale SCALE (and --init-image)`);
    return undefined;
  }
  if (!seamFix && (f.seamFixWidth ?? f.seamFixPadding ?? f.seamFixDenoise) !== undefined) throw new Error('--seam-fix-width, --seam-fix-padding and --seam-fix-denoise need --seam-fix band');
  return { scale: f.sdUpscale, overlap: f.sdUpscaleOverlap, upscaler: f.sdUpscaleUpscaler, batchSize: f.sdUpscaleBatch, ...(seamFix && { seamFix }) };
}

/** A PNG named by a flag, as RGB (plus its alpha, if any). */
function readPng(path: string, flag: string): ReturnType<typeof decodePngRgb> {
  if (!existsSync(path) || !statSync(path).isFile()) throw new Error(`${flag} ${path}: file not found`);
  return decodePngRgb(readFileSync(path), `${flag} ${path}`);
}

/** Output file names: `out.png` for one image, `out-0.png`, `out-1.png`, … for a batch. */
export function outputPaths(out: string, n: number): string[] {
  if (n === 1) return [out];
  const ext = extname(out);
  return Array.from({ length: n }, (_, i) => `${out.slice(0, out.length - ext.length)}-${i}${ext}`);
}

/** Fails before any work when the PNG could not be written. */
function checkOutput(out: string, flag = '--out'): void {
  if (extname(out).toLowerCase() !== '.png') throw new Error(`${flag} must name a .png file; got ${out}`);
  if (existsSync(out) && statSync(out).isDirectory()) throw new Error(`cannot write ${out}: it is a folder (name a .png file)`);
  const dir = dirname(resolve(out));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`cannot write ${out}: folder ${dir} does not exist (create it first)`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new Error(`cannot write ${out}: folder ${dir} is not writable (choose another --out)`);
  }
}

/**
 * `--preview`: a PNG rewritten (atomically) with each new preview. TAESD previews decode with a
 * TAESD of their own, beside the pipeline's: --taesd, else a TAESD --vae.
 */
async function livePreview(
  f: GenerateFlags,
  model: string,
  source: { taesd?: string; vae?: string; taesdFamily?: TinyVAEFamily },
  log: (m: string) => void,
): Promise<{ live: LivePreview; decoder?: TinyVAE } | undefined> {
  if (!f.preview) return undefined;
  const path = f.previewPath ?? f.out.replace(/\.png$/i, '-preview.png');
  checkOutput(path, '--preview-path');
  let decoder: TinyVAE | undefined;
  if (f.preview === 'taesd') {
    const taesd = source.taesd ?? (source.vae && isTinyVAESource(source.vae) ? source.vae : undefined);
    if (!taesd) throw new Error('--preview taesd needs a TAESD: give --taesd FILE|DIR (taesd_decoder.safetensors, taesdxl_decoder.safetensors for SDXL), or --vae a TAESD');
    decoder = await modelTinyVAE(model, taesd, source.taesd ? '--taesd' : '--vae', { ...runtimeFromFlags(f), taesdFamily: source.taesdFamily, onWarning: () => {} });
  }
  const live = new LivePreview((png) => writeFileAtomic(path, png), decoder, (e) => log(`--preview taesd failed (${e.message}); writing the cheap approximation`));
  return { live, decoder };
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('generate images from a prompt (text-to-image)')
    .option('--model <dir|file>', `diffusers model folder or single-file .safetensors checkpoint (default: the built-in ${BUILTIN_MODEL_NAME} model)`)
    .option('--vae <file|dir>', "replace the model's VAE: a VAE .safetensors file or a diffusers VAE folder; or a TAESD, which then decodes and encodes")
    .option('--taesd <file|dir>', "a TAESD beside the model's VAE, for --preview taesd and --vae-decoder/--vae-encoder taesd: taesd_decoder.safetensors, a diffusers AutoencoderTiny folder, or a folder with one per family")
    .addOption(new Option('--taesd-family <family>', 'the family a TAESD (--vae, --taesd) was made for, where its name does not say (taesd: sd, taesdxl: sdxl)').choices(TINY_VAE_FAMILIES))
    .addOption(new Option('--vae-decoder <which>', "decode with the model's VAE (full) or the TAESD (default: the pipeline's VAE)").choices(VAE_METHODS))
    .addOption(new Option('--vae-encoder <which>', 'encode init images (img2img, inpainting, lanczos hires fix) with the full VAE or the TAESD').choices(VAE_METHODS))
    .addOption(new Option('--preview <method>', 'write a live preview while generating: cheap (latent approximation) or taesd (needs --taesd or a TAESD --vae)').choices(PREVIEW_METHODS))
    .option('--preview-path <file.png>', 'where --preview writes (default: beside --out, NAME-preview.png)')
    .addOption(new Option('--prediction <type>', 'override the prediction type (single files: from the .yaml beside it, else the family)').choices(PREDICTIONS))
    .option('-p, --prompt <text>', 'what to draw (required unless --from-png)')
    .option('--from-png <image.png>', 'make an image again from the parameters in its PNG (todo-sd or AUTOMATIC1111); flags given override them')
    .option('-n, --negative-prompt <text>', 'what not to draw')
    .option('-W, --width <px>', 'image width, a multiple of 8 (default: the model native size)', parseIntOption('--width', 8))
    .option('-H, --height <px>', 'image height, a multiple of 8 (default: the model native size)', parseIntOption('--height', 8))
    .option('--steps <n>', 'denoising steps', parseIntOption('--steps', 1, 1000), 20)
    .option('--cfg <scale>', 'classifier-free guidance scale (1 = off)', parseFloatOption('--cfg', 0, 100), 7.5)
    .option('-s, --seed <n>', 'seed (the same noise as torch.Generator("cpu").manual_seed(n)); default: random', parseIntOption('--seed', 0, 2 ** 53 - 1))
    .option('--sampler <name>', 'sampler, ours or AUTOMATIC1111\'s name ("DPM++ 2M Karras", "Euler a", UniPC, …; default: the model scheduler)', parseSamplerOption)
    .option('--karras', 'Karras noise schedule (all samplers but ddim, pndm, lcm and tcd)')
    .addOption(new Option('--timestep-spacing <spacing>', "override the model scheduler's timestep spacing (trailing: for Lightning / Turbo / Hyper-SD models; not lcm/tcd)").choices(TIMESTEP_SPACINGS))
    .option('--eta <gamma>', "the tcd sampler's gamma: 0 deterministic … 1 fully stochastic (default 0.3)", parseFloatOption('--eta', 0, 1))
    .option('-b, --batch <n>', 'images per prompt', parseIntOption('--batch', 1, 64), 1)
    .option('--latents <file>', 'initial noise from a safetensors file (tensor "latents", [batch, 4, h/8, w/8])')
    .option('--init-image <file.png>', 'image-to-image: start from this picture (resized with Lanczos to --width x --height if given)')
    .option('--strength <s>', 'image-to-image: how much is repainted, 0 < s <= 1 (default 0.75)', parseFloatOption('--strength', 0, 1))
    .option('--mask <file.png>', 'inpainting (with --init-image): white repaints, black keeps; another size is resized')
    .option('--mask-blur <px>', 'Gaussian blur of the mask, in pixels', parseFloatOption('--mask-blur', 0, 64), 4)
    .option('--mask-invert', 'repaint the black part of the mask instead')
    .addOption(new Option('--inpainting-fill <how>', 'what the masked area starts from').choices(INPAINT_FILLS).default('original'))
    .option('--hires-scale <x>', 'hires fix: second pass at x times the size', parseFloatOption('--hires-scale', 1, 8))
    .option('--hires-steps <n>', 'hires fix: second-pass steps (default: --steps)', parseIntOption('--hires-steps', 1, 1000))
    .option('--hires-denoise <s>', 'hires fix: second-pass strength, 0 < s <= 1', parseFloatOption('--hires-denoise', 0, 1), 0.5)
    .addOption(new Option('--hires-upscaler <name>', 'hires fix: how the first pass is enlarged').choices(HIRES_UPSCALERS).default('latent'))
    .option('--hires-todo <factor>', 'hires fix: ToDo in the second pass (off, auto or a factor; default: as --todo)', parseTodo)
    .option('--todo <factor>', 'ToDo token downsampling: off, auto or a factor (1.5, 2, 3, …; fractional with nearest, nearest-exact, bilinear)', parseTodo, 'off')
    .addOption(new Option('--todo-mode <mode>', 'ToDo downsampling operator').choices(TODO_MODES).default('nearest'))
    .option('--todo-stop <fraction>', 'go back to dense attention after this fraction of the steps', parseFloatOption('--todo-stop', 0, 1), 1)
    .option('--todo-level2 <factor>', 'ToDo factor at the second attention level', parseFloatOption('--todo-level2', 1, 64), 1)
    .option('--tome <ratio>', 'ToMe token merging (the baseline ToDo is compared with): fraction of top-level tokens to merge', parseFloatOption('--tome', 0, 0.75))
    .option('--clip-skip <n>', 'use the n-th last CLIP layer (1 = last)', parseIntOption('--clip-skip', 1), 1)
    .addOption(new Option('--prompt-syntax <syntax>', 'a1111: (emphasis:1.2), BREAK, [from:to:0.5], prompts past 75 tokens; plain: diffusers (cut at 75 tokens)').choices(PROMPT_SYNTAXES).default('a1111'))
    .addOption(new Option('--vae-tiling <when>', 'tiled VAE decoding (and encoding)').choices(['auto', 'on', 'off']).default('auto'))
    .option('--tiled-diffusion', "MultiDiffusion (diffusers' panorama pipeline): denoise overlapping latent views, averaged; for sizes past the model's own")
    .option('--tile-window <n>', `MultiDiffusion view side in latent pixels (default ${TILING_DEFAULTS.window})`, parseIntOption('--tile-window', 1, 1024))
    .option('--tile-stride <n>', `MultiDiffusion distance between views in latent pixels (default ${TILING_DEFAULTS.stride})`, parseIntOption('--tile-stride', 1, 1024))
    .option('--tile-batch <n>', `MultiDiffusion views per U-Net call (default ${TILING_DEFAULTS.viewBatch})`, parseIntOption('--tile-batch', 1, 64))
    .option('--circular', 'MultiDiffusion views wrap around the left and right edges: a seamless 360° panorama')
    .option('--sd-upscale <scale>', "A1111's SD upscale of --init-image: upscale, redraw in tiles of --width x --height (default: the model's size) with --strength, feather the seams", parseFloatOption('--sd-upscale', 1, 8))
    .option('--sd-upscale-overlap <px>', 'SD upscale: pixels shared by neighbouring tiles (default 64)', parseIntOption('--sd-upscale-overlap', 0, 1024))
    .addOption(new Option('--sd-upscale-upscaler <name>', 'SD upscale: how the picture is enlarged first (default lanczos; none tiles it as it is)').choices(SD_UPSCALERS))
    .option('--sd-upscale-batch <n>', "SD upscale: A1111's batch size, which sets the tile seeds (seed + batch + place in it; default 1: seed + tile)", parseIntOption('--sd-upscale-batch', 1, 64))
    .addOption(new Option('--seam-fix <mode>', "SD upscale: redraw a band across each seam afterwards (Ultimate SD upscale's band pass)").choices(['band']))
    .option('--seam-fix-width <px>', 'seam fix band width (default 64)', parseIntOption('--seam-fix-width', 8, 1024))
    .option('--seam-fix-padding <px>', 'seam fix context on each side of the band (default 16)', parseIntOption('--seam-fix-padding', 0, 1024))
    .option('--seam-fix-denoise <s>', 'seam fix strength (default 0.35)', parseFloatOption('--seam-fix-denoise', 0, 1))
    .option('--lora <file[:weight]>', 'merge a LoRA / LoCon .safetensors at this weight (default 1); repeatable', parseLoraOption, [])
    .option('--lora-dir <dir>', 'folder of the LoRAs that <lora:name:weight> tags in the prompt name (name.safetensors)')
    .option('-o, --out <file.png>', 'output PNG', 'output.png')
    .option('--json', 'print a JSON summary on stdout')
    .option('--json-events', 'report progress as JSON lines on stderr (phases, steps, messages, then done or error) instead of a bar')
    .addOption(providerOption())
    .addOption(precisionOption())
    .addOption(attentionFormOption())
    .addOption(deviceLoopOption())
    .option('--threads <n>', 'CPU threads per operator (default: all cores)', parseIntOption('--threads', 1, 1024))
    .action(async (f: GenerateFlags, cmd: Command) => {
      const report = reporter(process.stderr, f.jsonEvents ?? false);
      try {
        await generate(f, cmd, report);
      } catch (e) {
        if (!report.failed(e)) throw e;
        process.exitCode = 1;
      }
    });
}

async function generate(f: GenerateFlags, cmd: Command, report: Reporter): Promise<void> {
  if (f.prompt === undefined && f.fromPng === undefined) throw new Error('--prompt is required (or --from-png image.png to take it from an image)');
  checkOutput(f.out);
  const png = f.fromPng === undefined ? undefined : readFromPng(f.fromPng);
  const log = report.log;
  const modelDir = f.model ?? BUILTIN_MODEL_DIR;
  if (!f.model) log(`no --model given: using the built-in model "${BUILTIN_MODEL_NAME}" (small, trained at 32x32; soft pictures)`);
  const latents = f.latents ? readLatentsFile(f.latents) : undefined;
  const initImage = f.initImage ? readPng(f.initImage, '--init-image') : undefined;
  const mask = f.mask ? readPng(f.mask, '--mask') : undefined;
  const attention = attentionFromFlags(f);
  const tiling = tilingFromFlags(f);
  const sdUpscale = sdUpscaleFromFlags(f);
  const source = { vae: f.vae, taesd: f.taesd, taesdFamily: f.taesdFamily, prediction: f.prediction };
  const pipe = await StableDiffusion.load(modelDir, { ...runtimeFromFlags(f), ...source, onWarning: log, loras: f.lora, onProgress: report.onProgress });
  const hiresFlags = {
    scale: f.hiresScale,
    steps: f.hiresSteps,
    denoise: f.hiresDenoise,
    upscaler: f.hiresUpscaler,
    attention: f.hiresTodo === undefined ? attention : attentionFromFlags({ ...f, todo: f.hiresTodo, tome: undefined }),
  };
  const fromFlags: GenerateOptions = {
    prompt: f.prompt ?? '',
    negativePrompt: f.negativePrompt,
    width: f.width,
    height: f.height,
    steps: f.steps,
    cfg: f.cfg,
    seed: f.seed,
    batch: f.batch,
    sampler: f.sampler?.sampler,
    karras: f.karras ?? f.sampler?.karras,
    timestepSpacing: f.timestepSpacing,
    eta: f.eta,
    latents,
    attention,
    clipSkip: f.clipSkip,
    promptSyntax: f.promptSyntax,
    vaeTiling: f.vaeTiling === 'auto' ? 'auto' : f.vaeTiling === 'on',
    vaeDecoder: f.vaeDecoder,
    vaeEncoder: f.vaeEncoder,
    loraDir: f.loraDir,
    initImage,
    strength: f.strength,
    mask: mask && { image: mask, blur: f.maskBlur, invert: f.maskInvert ?? false, fill: f.inpaintingFill },
    hires: f.hiresScale === undefined ? undefined : { ...hiresFlags, scale: f.hiresScale },
    tiling,
    sdUpscale,
  };
  const opts =
    png === undefined ? fromFlags : mergeFromPng(png, fromFlags, hiresFlags, cmd, log, { name: pipe.modelName, attentionLevels: attentionLevels(pipe.unet.config), vaeMethods: pipe.vaeMethods });
  const preview = await livePreview(f, modelDir, source, log);
  let result: GenerateResult;
  try {
    result = await pipe.generate(opts, {
      onStep: (s) => {
        if (s.latents) preview?.live.update(s.latents);
        report.onStep(s);
      },
      onWarning: log,
    });
  } finally {
    await preview?.live.settle();
    await preview?.decoder?.dispose();
    await pipe.dispose();
  }
  if (png) checkLoraHashes(png, result.images[0]!.parameters, log);
  const paths = outputPaths(f.out, result.images.length);
  result.images.forEach((img, i) => writeFileAtomic(paths[i]!, encodePng(img, { parameters: img.parameters })));
  const s = result.settings;
  const summary = { files: paths, model: modelDir, ...s, timings: result.timings, parameters: result.images[0]!.parameters };
  if (f.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  const size = s.sdUpscale ?? s.hires ?? s;
  const line = `wrote ${paths.map((p) => basename(p)).join(', ')} (${size.width}x${size.height}, ${s.steps}${s.hires ? ` + ${s.hires.steps}` : ''} steps, ${s.sampler}, seed ${s.seed}) in ${((result.timings.textMs + result.timings.denoiseMs + result.timings.decodeMs) / 1000).toFixed(1)} s`;
  report.done({ files: paths, width: size.width, height: size.height, seed: s.seed, timings: result.timings }, f.json ? undefined : line);
}
