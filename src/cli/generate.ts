/** `todo-sd generate`: prompt in, PNG out. */
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { AttentionOptions } from '../attention/options.js';
import { TODO_MODES, type TodoMode } from '../attention/todo.js';
import { writeFileAtomic } from '../io/atomic.js';
import { decodeImage, type DecodedImage } from '../io/image.js';
import { encodePng } from '../io/png.js';
import { BUILTIN_MODEL_DIR, BUILTIN_MODEL_NAME } from '../models/builtin.js';
import { modelTinyVAE, PREDICTIONS, VAE_METHODS, type VaeMethod } from '../pipeline/model-parts.js';
import { LivePreview, PREVIEW_METHODS, type PreviewMethod } from '../pipeline/preview.js';
import type { TinyVAE } from '../models/taesd.js';
import { isTinyVAESource, TINY_VAE_FAMILIES, type TinyVAEFamily } from '../models/taesd-source.js';
import type { Prediction } from '../models/single-file/checkpoint.js';
import { attentionLevels } from '../models/unet.js';
import { INPAINT_FILLS, type InpaintFill } from '../pipeline/inpaint.js';
import { TILING_DEFAULTS, type TilingOptions } from '../pipeline/multidiffusion.js';
import type { SdUpscaleOptions } from '../pipeline/sd-upscale.js';
import { builtinUpscaler } from '../pipeline/upscale-image.js';
import { readLatentsFile, StableDiffusion, type GenerateOptions, type GenerateResult } from '../pipeline/stable-diffusion.js';
import { PROMPT_SYNTAXES, type PromptSyntax } from '../prompt/index.js';
import { STRENGTH_RULES, type StrengthRule } from '../pipeline/strength.js';
import { TIMESTEP_SPACINGS, type TimestepSpacing } from '../scheduler/config.js';
import { checkControlNetHashes, checkLoraHashes, mergeFromPng, readFromPng } from './from-png.js';
import { karrasOption, parseSamplerOption, samplerFromFlags, type SamplerChoice } from './sampler-option.js';
import { parseFloatOption, parseIntOption } from './options.js';
import { reporter, type Reporter } from './progress.js';
import { parseLoraOption } from './lora-option.js';
import { builtinHiresUpscaler, imageUpscaler, loadUpscalerModel } from './upscaler-option.js';
import { Upscaler } from '../models/upscaler/upscaler.js';
import type { LoraSpec } from '../lora/merge.js';
import { deepCacheFromFlag, parseDeepCacheOption, type DeepCacheFlag } from './deepcache-option.js';
import { attentionFormOption, deviceLoopOption, precisionOption, providerOption, runtimeFromFlags, type RuntimeFlags } from './runtime-flags.js';
import { UserError } from '../errors.js';
import { controlUnitsFromFlags, parseControlNetOption, type ControlFlags } from './controlnet-option.js';
import { CONTROL_PREPROCESSORS, RESIZE_MODES } from '../pipeline/control-image.js';
import { CONTROL_MODES } from '../pipeline/controlnet.js';
import { controlNetsFromInfotext } from '../pipeline/controlnet-infotext.js';

interface GenerateFlags extends RuntimeFlags, ControlFlags {
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
  strengthRule: StrengthRule;
  mask?: string;
  maskBlur: number;
  maskInvert?: boolean;
  inpaintingFill: InpaintFill;
  hiresScale?: number;
  hiresSteps?: number;
  hiresDenoise: number;
  hiresUpscaler: string;
  upscalerDir?: string;
  tile: number;
  tileOverlap: number;
  hiresTodo?: string;
  hiresDeepcache?: DeepCacheFlag;
  hiresDeepcacheStart?: number;
  deepcache?: DeepCacheFlag;
  deepcacheStart: number;
  ngms: number;
  ngmsAllSteps?: boolean;
  batchCondUncond: boolean;
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
  sdUpscaleUpscaler?: string;
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
    if (!todoOff) throw new UserError('--todo and --tome are two ways to cut attention work: choose one');
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

/** SD upscale from its flags (its upscaler, which may be a model, is loaded apart); its other flags without --sd-upscale are an error. */
function sdUpscaleFromFlags(f: GenerateFlags): SdUpscaleOptions | undefined {
  const seamFix = f.seamFix && { mode: f.seamFix, width: f.seamFixWidth, padding: f.seamFixPadding, denoise: f.seamFixDenoise };
  if (f.sdUpscale === undefined) {
    const stray = (['sdUpscaleOverlap', 'sdUpscaleUpscaler', 'sdUpscaleBatch', 'seamFix', 'seamFixWidth', 'seamFixPadding', 'seamFixDenoise'] as const).find((k) => f[k] !== undefined);
    if (stray) throw new UserError(`--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} belongs to SD upscale: add --sd-upscale SCALE (and --init-image)`);
    return undefined;
  }
  if (!seamFix && (f.seamFixWidth ?? f.seamFixPadding ?? f.seamFixDenoise) !== undefined) throw new UserError('--seam-fix-width, --seam-fix-padding and --seam-fix-denoise need --seam-fix band');
  return { scale: f.sdUpscale, overlap: f.sdUpscaleOverlap, batchSize: f.sdUpscaleBatch, ...(seamFix && { seamFix }) };
}

/** The bytes of a file named by a flag (or an argument: `what`); a missing one is named. */
export function readInputFile(path: string, what: string): Buffer {
  if (!existsSync(path) || !statSync(path).isFile()) throw new UserError(`${what} ${path}: file not found`);
  return readFileSync(path);
}

/** A picture named by a flag (PNG, JPEG, WebP, …), as RGB plus its alpha, if any. */
function readImage(path: string, flag: string): Promise<DecodedImage> {
  return decodeImage(readInputFile(path, flag), { what: `${flag} ${path}` });
}

/** Output file names: `out.png` for one image, `out-0.png`, `out-1.png`, … for a batch. */
export function outputPaths(out: string, n: number): string[] {
  if (n === 1) return [out];
  const ext = extname(out);
  return Array.from({ length: n }, (_, i) => `${out.slice(0, out.length - ext.length)}-${i}${ext}`);
}

/** Fails before any work when the PNG could not be written. */
export function checkOutput(out: string, flag = '--out'): void {
  if (extname(out).toLowerCase() !== '.png') throw new UserError(`${flag} must name a .png file; got ${out}`);
  if (existsSync(out) && statSync(out).isDirectory()) throw new UserError(`cannot write ${out}: it is a folder (name a .png file)`);
  const dir = dirname(resolve(out));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`cannot write ${out}: folder ${dir} does not exist (create it first)`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UserError(`cannot write ${out}: folder ${dir} is not writable (choose another --out)`);
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
    if (!taesd) throw new UserError('--preview taesd needs a TAESD: give --taesd FILE|DIR (taesd_decoder.safetensors, taesdxl_decoder.safetensors for SDXL), or --vae a TAESD');
    decoder = await modelTinyVAE(model, taesd, source.taesd ? '--taesd' : '--vae', { ...runtimeFromFlags(f), taesdFamily: source.taesdFamily, onWarning: () => {} });
  }
  const live = new LivePreview((png) => writeFileAtomic(path, png), decoder, (e) => log(`--preview taesd failed (${e.message}); writing the cheap approximation`));
  return { live, decoder };
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('generate images from a prompt (text-to-image)')
    .option('--model <dir|file>', `diffusers model folder or single-file .safetensors / .ckpt checkpoint (default: the built-in ${BUILTIN_MODEL_NAME} model)`)
    .option('--vae <file|dir>', "replace the model's VAE: a VAE .safetensors / .pt file or a diffusers VAE folder; or a TAESD, which then decodes and encodes")
    .option('--taesd <file|dir>', "a TAESD beside the model's VAE, for --preview taesd and --vae-decoder/--vae-encoder taesd: taesd_decoder.safetensors, a diffusers AutoencoderTiny folder, or a folder with one per family")
    .addOption(new Option('--taesd-family <family>', 'the family a TAESD (--vae, --taesd) was made for, where its name does not say (taesd: sd, taesdxl: sdxl)').choices(TINY_VAE_FAMILIES))
    .addOption(new Option('--vae-decoder <which>', "decode with the model's VAE (full) or the TAESD (default: the pipeline's VAE)").choices(VAE_METHODS))
    .addOption(new Option('--vae-encoder <which>', 'encode init images (img2img, inpainting, a hires fix that upscales the image) with the full VAE or the TAESD').choices(VAE_METHODS))
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
    .addOption(karrasOption())
    .addOption(new Option('--timestep-spacing <spacing>', "override the model scheduler's timestep spacing (trailing: for Lightning / Turbo / Hyper-SD models; not lcm/tcd)").choices(TIMESTEP_SPACINGS))
    .option('--eta <gamma>', "the tcd sampler's gamma: 0 deterministic … 1 fully stochastic (default 0.3)", parseFloatOption('--eta', 0, 1))
    .option('-b, --batch <n>', 'images per prompt', parseIntOption('--batch', 1, 64), 1)
    .option('--latents <file>', 'initial noise from a safetensors file (tensor "latents", [batch, 4, h/8, w/8])')
    .option('--init-image <file>', 'image-to-image: start from this picture, PNG, JPEG or WebP (resized with Lanczos to --width x --height if given)')
    .option('--strength <s>', 'image-to-image: how much is repainted, 0 <= s <= 1 (default 0.75)', parseFloatOption('--strength', 0, 1))
    .addOption(new Option('--strength-rule <rule>', "which steps a strength runs (img2img, hires fix): diffusers' img2img cut or AUTOMATIC1111's").choices(STRENGTH_RULES).default('diffusers'))
    .option('--mask <file>', 'inpainting (with --init-image): white (or opaque, in a mask with transparency) repaints; another size is resized')
    .option('--mask-blur <px>', 'Gaussian blur of the mask, in pixels', parseFloatOption('--mask-blur', 0, 64), 4)
    .option('--mask-invert', 'repaint the black part of the mask instead')
    .addOption(new Option('--inpainting-fill <how>', 'what the masked area starts from').choices(INPAINT_FILLS).default('original'))
    .option('--hires-scale <x>', 'hires fix: second pass at x times the size', parseFloatOption('--hires-scale', 1, 8))
    .option('--hires-steps <n>', 'hires fix: second-pass steps (default: --steps)', parseIntOption('--hires-steps', 1, 1000))
    .option('--hires-denoise <s>', 'hires fix: second-pass strength, 0 <= s <= 1 (0: the upscaled first pass as it is)', parseFloatOption('--hires-denoise', 0, 1), 0.5)
    .option('--hires-upscaler <name>', 'hires fix: how the first pass is enlarged: latent, latent-nearest, lanczos, nearest, or an upscaler model (a file, or a name in --upscaler-dir: "R-ESRGAN 4x+", 4x-UltraSharp, …)', 'latent')
    .option('--upscaler-dir <dir>', "folder of upscaler models (.pth, .safetensors), or a models folder with A1111's ESRGAN/ and RealESRGAN/")
    .option('--tile <px>', 'upscaler models (hires fix, SD upscale): largest tile side in input pixels (0: no tiles)', parseIntOption('--tile', 0), 512)
    .option('--tile-overlap <px>', 'upscaler models: least overlap between tiles', parseIntOption('--tile-overlap', 0), 32)
    .option('--hires-todo <factor>', 'hires fix: ToDo in the second pass (off, auto or a factor; default: as --todo)', parseTodo)
    .option('--hires-deepcache <N[,layer,block]>', 'hires fix: DeepCache in the second pass (off, or as --deepcache; default: as --deepcache)', parseDeepCacheOption('--hires-deepcache'))
    .option('--hires-deepcache-start <fraction>', 'hires fix: second-pass steps run whole first (default: --deepcache-start)', parseFloatOption('--hires-deepcache-start', 0, 1))
    .option('--deepcache <N[,layer,block]>', 'DeepCache: the whole U-Net every N steps, its deep feature reused between; cache point layer,block (default 0,0)', parseDeepCacheOption('--deepcache'))
    .option('--deepcache-start <fraction>', 'DeepCache: this fraction of the steps, from the first, runs the whole U-Net', parseFloatOption('--deepcache-start', 0, 1), 0)
    .option('--ngms <sigma>', "A1111's Negative Guidance minimum sigma: below it, every other step skips the negative prompt (0 = off)", parseFloatOption('--ngms', 0, 1000), 0)
    .option('--ngms-all-steps', 'NGMS on every step below the sigma, not every other one')
    .option('--no-batch-cond-uncond', "run a guided step's negative and prompt halves as two calls: half the U-Net's and ControlNets' activation memory, a little slower (A1111's batch_cond_uncond off)")
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
    .option('--sd-upscale-upscaler <name>', 'SD upscale: how the picture is enlarged first: lanczos (default), nearest, none (tiles it as it is), or an upscaler model (a file, or a name in --upscaler-dir)')
    .option('--sd-upscale-batch <n>', "SD upscale: A1111's batch size, which sets the tile seeds (seed + batch + place in it; default 1: seed + tile)", parseIntOption('--sd-upscale-batch', 1, 64))
    .addOption(new Option('--seam-fix <mode>', "SD upscale: redraw a band across each seam afterwards (Ultimate SD upscale's band pass)").choices(['band']))
    .option('--seam-fix-width <px>', 'seam fix band width (default 64)', parseIntOption('--seam-fix-width', 8, 1024))
    .option('--seam-fix-padding <px>', 'seam fix context on each side of the band (default 16)', parseIntOption('--seam-fix-padding', 0, 1024))
    .option('--seam-fix-denoise <s>', 'seam fix strength (default 0.35)', parseFloatOption('--seam-fix-denoise', 0, 1))
    .option('--lora <file[:weight]>', 'merge a LoRA / LoCon (.safetensors or .pt) at this weight (default 1); repeatable', parseLoraOption, [])
    .option('--lora-dir <dir>', 'folder of the LoRAs that <lora:name:weight> tags in the prompt name (name.safetensors, .pt, .ckpt)')
    .option('--controlnet <model:image[:weight[:start[:end]]]>', 'a ControlNet unit: its folder or file (.safetensors, .pth; or a name in --controlnet-dir), the control image, weight (1), guidance start (0) and end (1); repeatable', parseControlNetOption, [])
    .option('--controlnet-dir <dir>', 'folder of ControlNets named by --controlnet or a --from-png image (NAME.safetensors, NAME.pth, … or NAME/)')
    .option('--control-preprocessor <name[,name…]>', `preprocessor, one for all units or one per unit: ${CONTROL_PREPROCESSORS.join(', ')} (default none: the image is the control map)`)
    .option('--control-mode <mode[,mode…]>', `A1111's control mode: ${CONTROL_MODES.join(', ')} (default balanced)`)
    .option('--control-resize <mode[,mode…]>', `how a control image of another size is fitted: ${RESIZE_MODES.join(', ')} (default crop-and-resize)`)
    .option('--control-res <px[,px…]>', 'preprocessor resolution (canny: the short side; default 512)')
    .option('--control-threshold-a <v[,v…]>', 'preprocessor threshold A (canny low, default 100; tile_resample down-sampling rate, default 1)')
    .option('--control-threshold-b <v[,v…]>', 'preprocessor threshold B (canny high, default 200)')
    .option('--control-pixel-perfect', 'preprocessor resolution that gives the generation size')
    .option('--control-guess-mode', "diffusers' guess mode for every unit")
    .option('--control-mask <file[,file…]>', 'mask of the inpaint preprocessors (white repaints; default: --mask)')
    .option('--control-image <file>', 'with --from-png: the control image of each ControlNet unit the PNG names, in order; repeatable', (v: string, prev: string[]) => [...prev, v], [])
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
  if (f.prompt === undefined && f.fromPng === undefined) throw new UserError('--prompt is required (or --from-png image.png to take it from an image)');
  checkOutput(f.out);
  const png = f.fromPng === undefined ? undefined : readFromPng(f.fromPng);
  const log = report.log;
  const modelDir = f.model ?? BUILTIN_MODEL_DIR;
  if (!f.model) log(`no --model given: using the built-in model "${BUILTIN_MODEL_NAME}" (small, trained at 32x32; soft pictures)`);
  const latents = f.latents ? readLatentsFile(f.latents) : undefined;
  const initImage = f.initImage ? await readImage(f.initImage, '--init-image') : undefined;
  const mask = f.mask ? await readImage(f.mask, '--mask') : undefined;
  const attention = attentionFromFlags(f);
  const deepcache = deepCacheFromFlag(f.deepcache, f.deepcacheStart);
  const tiling = tilingFromFlags(f);
  const sdUpscale = sdUpscaleFromFlags(f);
  const runtime = runtimeFromFlags(f);
  const dirs = f.upscalerDir ? [f.upscalerDir] : [];
  const upscalerTile = { tile: f.tile, overlap: f.tileOverlap };
  // Upscaler models: named by a flag (loaded only where it is used), or, when the flag is not typed, by the PNG.
  const hires = f.hiresScale !== undefined || png?.settings['Hires upscale'] !== undefined || png?.settings['Hires resize'] !== undefined;
  const upscalerFlag = builtinHiresUpscaler(f.hiresUpscaler) ?? (hires ? await loadUpscalerModel(f.hiresUpscaler, dirs, runtime) : 'latent');
  if (sdUpscale && f.sdUpscaleUpscaler !== undefined) sdUpscale.upscaler = await imageUpscaler(f.sdUpscaleUpscaler, dirs, runtime);
  const pngModel = async (key: string, flag: string, builtin: (name: string) => unknown, used: boolean): Promise<Upscaler | undefined> => {
    const name = png && used && cmd.getOptionValueSource(flag) !== 'cli' ? png.settings[key] : undefined;
    if (name === undefined || builtin(name) || !f.upscalerDir) return undefined;
    try {
      return await loadUpscalerModel(name, dirs, runtime);
    } catch (e) {
      log(`${f.fromPng}: ${(e as Error).message}`);
      return undefined;
    }
  };
  const pngUpscaler = await pngModel('Hires upscaler', 'hiresUpscaler', builtinHiresUpscaler, true);
  // The PNG's SD upscale applies only to an --init-image, and not when SD upscale flags are typed.
  const pngSdUpscaler = await pngModel('SD upscale upscaler', 'sdUpscaleUpscaler', builtinUpscaler, initImage !== undefined && !sdUpscale);
  const controlnets = await controlUnitsFromFlags(f, readImage, png ? controlNetsFromInfotext(png.settings).units : []);
  const source = { vae: f.vae, taesd: f.taesd, taesdFamily: f.taesdFamily, prediction: f.prediction };
  const pipe = await StableDiffusion.load(modelDir, { ...runtime, ...source, onWarning: log, loras: f.lora, onProgress: report.onProgress });
  const hiresFlags = {
    scale: f.hiresScale,
    steps: f.hiresSteps,
    denoise: f.hiresDenoise,
    upscaler: upscalerFlag,
    tile: upscalerTile,
    attention: f.hiresTodo === undefined ? attention : attentionFromFlags({ ...f, todo: f.hiresTodo, tome: undefined }),
    deepcache: f.hiresDeepcache === undefined && f.hiresDeepcacheStart === undefined ? deepcache : (deepCacheFromFlag(f.hiresDeepcache ?? f.deepcache, f.hiresDeepcacheStart ?? f.deepcacheStart) ?? (false as const)),
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
    ...samplerFromFlags(f),
    timestepSpacing: f.timestepSpacing,
    eta: f.eta,
    latents,
    attention,
    deepcache,
    sMinUncond: f.ngms,
    sMinUncondAll: f.ngmsAllSteps ?? false,
    batchCondUncond: f.batchCondUncond,
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
    strengthRule: initImage || f.hiresScale !== undefined ? f.strengthRule : undefined,
    ...(controlnets.length > 0 && { controlnets }),
  };
  const opts =
    png === undefined
      ? fromFlags
      : mergeFromPng(png, fromFlags, hiresFlags, cmd, log, { name: pipe.modelName, attentionLevels: attentionLevels(pipe.unet.config), vaeMethods: pipe.vaeMethods, hiresUpscaler: pngUpscaler, sdUpscaleUpscaler: pngSdUpscaler });
  // An SD upscale's model tiles as --tile says, whether the flags or the PNG asked for it.
  if (opts.sdUpscale) opts.sdUpscale = { ...opts.sdUpscale, tile: upscalerTile };
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
    for (const u of [upscalerFlag, pngUpscaler, sdUpscale?.upscaler, pngSdUpscaler]) if (u instanceof Upscaler) await u.dispose();
  }
  if (png) {
    checkLoraHashes(png, result.images[0]!.parameters, log);
    checkControlNetHashes(png, result.images[0]!.parameters, log);
  }
  const paths = outputPaths(f.out, result.images.length);
  result.images.forEach((img, i) => writeFileAtomic(paths[i]!, encodePng(img, { parameters: img.parameters })));
  const s = result.settings;
  const summary = { files: paths, model: modelDir, ...s, timings: result.timings, parameters: result.images[0]!.parameters };
  if (f.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  const size = s.sdUpscale ?? s.hires ?? s;
  const line = `wrote ${paths.map((p) => basename(p)).join(', ')} (${size.width}x${size.height}, ${s.steps}${s.hires ? ` + ${s.hires.steps}` : ''} steps, ${s.sampler}, seed ${s.seed}) in ${((result.timings.textMs + result.timings.denoiseMs + result.timings.decodeMs) / 1000).toFixed(1)} s`;
  report.done({ files: paths, width: size.width, height: size.height, seed: s.seed, timings: result.timings }, f.json ? undefined : line);
}
