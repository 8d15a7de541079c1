/**
/**
 * Stable Diffusion 1.x / 2.x / XL: tokenize → encode the prompts (negative and positive halves in
 * one batch for classifier-free guidance; SDXL's two-encoder conditioning lives in
 * conditioning-sdxl.ts) → start from noise, or from an init image (img2img.ts), with an optional
 * inpainting mask (inpaint.ts) → denoise with a scheduler → optionally a hires-fix second pass
 * (hires.ts) → VAE decode → RGB images.
 */
import { totalmem } from 'node:os';
import { basename, resolve } from 'node:path';
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { autoTodoFactor, todoActiveAt } from '../attention/todo.js';
import { openWeightsFile } from '../io/weights-file.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import { TinyVAE } from '../models/taesd.js';
import { attentionLevels, UNet, type UNetConfig } from '../models/unet.js';
import { VAE } from '../models/vae.js';
import { TorchGenerator } from '../random/torch-randn.js';
import { phase, ProgressRelay, type ProgressListener } from '../runtime/progress.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { TimestepSpacing } from '../scheduler/config.js';
import { createScheduler, type SamplerName, type Scheduler } from '../scheduler/index.js';
import { resolveSampler } from '../scheduler/names.js';
import { TCD_DEFAULT_GAMMA } from '../scheduler/tcd.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';
import { numel, type IntTensor, type Tensor } from '../tensor.js';
import type { RgbImage } from '../io/png.js';
import { PROMPT_SYNTAXES, PromptConditioning, type PromptSyntax } from '../prompt/index.js';
import type { Conditioning, SdxlConditioner } from './conditioning-sdxl.js';
import { detectModelFamily, type ModelFamily } from './model-family.js';
import { modelSdxlConditioner, modelTinyVAE, modelTokenizer, modelVAE, nativeImageSize, schedulerConfig, VAE_METHODS, type ModelSourceOptions, type VaeMethod } from './model-parts.js';
import { HIRES_UPSCALERS, hiresSize, hiresUpscalerLabel, upscaleLatents, type HiresOptions } from './hires.js';
import { Upscaler } from '../models/upscaler/upscaler.js';
import { resizeWithUpscaler } from './upscale-image.js';
import { checkRgbImage, encodeInitLatents, fitImage, imagesToTensor, noiseLatents } from './img2img.js';
import { STRENGTH_RULES, strengthRun, type StrengthRule } from './strength.js';
import { blendLatents, fillMasked, INPAINT_FILLS, pasteOriginal, prepareMask, type InpaintFill, type InpaintMask } from './inpaint.js';
import { a1111Parameters, withFields } from './parameters.js';
import { sdUpscale, type SdUpscaleOptions, type SdUpscaleSettings } from './sd-upscale.js';
import { decodeTiled, encodeTiled, type TileOptions } from './vae-tiling.js';
import type { LoraSpec } from '../lora/merge.js';
import { PipelineLoras, type UsedLora } from '../lora/pipeline-loras.js';
import { denoiseOnDevice, deviceLoopWanted } from './device-loop.js';
import { abortError, UserError } from '../errors.js';
import { ControlNet } from '../models/controlnet.js';
import { checkControlNetFits, ControlNetPass, resolveControlUnit, type ControlNetUnit, type ResolvedControlUnit } from './controlnet.js';
import { controlNetInfotext, type ControlNetSettings, controlNetSettings } from './controlnet-infotext.js';
import { classifierFreeGuidance, timestepCondition } from './guidance-embedding.js';
import { deepCacheFullSteps, resolveDeepCache, type DeepCacheOptions, type ResolvedDeepCache } from './deepcache.js';
import { timestepSigma, type NgmsOptions } from './guidance.js';
import { evaluationKind, NoisePredictor, type EvaluationKind, type NoisePredictorOptions, type PassEvaluations } from './noise-predictor.js';
import { conditioningForViews, cropColumns, latentViews, MultiDiffusion, padCircular, resolveTiling, type ModelEvaluation, type Tiling, type TilingOptions } from './multidiffusion.js';

export interface GenerateOptions {
  prompt: string;
  negativePrompt?: string;
  /** Image size in pixels, multiples of 8 (of the VAE's scale); default: the model's native size. */
  width?: number;
  height?: number;
  steps?: number;
  /** Classifier-free guidance scale; 1 or less turns guidance off (one U-Net pass per step). */
  cfg?: number;
  /** Seed of the initial noise: equal to torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed)). */
  seed?: number;
  /** Images per prompt (one batch, one seed, as diffusers' num_images_per_prompt). */
  batch?: number;
  /** Our name or AUTOMATIC1111's (`'DPM++ 2M Karras'` also sets `karras` unless it is given). */
  sampler?: SamplerName | (string & Record<never, never>);
  karras?: boolean;
  /**
   * Overrides the model scheduler's `timestep_spacing`: `trailing` starts at the last training
   * timestep, as few-step models (SDXL-Lightning, SD-Turbo, Hyper-SD) expect. Not for lcm/tcd.
   */
  timestepSpacing?: TimestepSpacing;
  /** The tcd sampler's γ (diffusers' `eta`): 0 deterministic … 1 fully stochastic; default 0.3. */
  eta?: number;
  /** Initial noise [batch, 4, height/8, width/8] instead of the seed's (scaled by the scheduler's init sigma, as diffusers does). */
  latents?: Tensor;
  attention?: AttentionOptions;
  /** 1 = last CLIP layer (default), 2 = the one before, … (AUTOMATIC1111's convention). */
  clipSkip?: number;
  /** Tiled VAE decoding: 'auto' (default) tiles above 1024x1024 pixels. */
  vaeTiling?: boolean | 'auto';
  /**
   * Which VAE decodes (A1111's "VAE Decoder"): 'full', the model's, or 'taesd' (a TAESD given at
   * load as `taesd`, or as `vae`). Default: the pipeline's VAE, whichever it is.
   */
  vaeDecoder?: VaeMethod;
  /** Which VAE encodes init images (img2img, inpainting, a hires fix that upscales the image); A1111's "VAE Encoder". */
  vaeEncoder?: VaeMethod;
  /**
   * Image-to-image: the starting picture. Resized with Lanczos to width x height when those are
   * given and differ; without them the size is the image's, rounded down to a multiple of 8.
   */
  initImage?: RgbImage;
  /** How far the init image is noised, 0 ≤ strength ≤ 1 (default 0.75): the share of the steps that run. */
  strength?: number;
  /**
   * Which steps img2img and the hires fix's second pass run for a strength: 'diffusers' (default,
   * diffusers' img2img cut) or 'a1111' (AUTOMATIC1111's rules per sampler family); see strength.ts.
   * Where diffusers' cut runs no step (strength 0), A1111's rule applies.
   */
  strengthRule?: StrengthRule;
  /** Inpainting with an ordinary model (needs initImage): white repaints. */
  mask?: InpaintMask;
  /** Hires fix: a second, image-to-image pass at scale × the size. */
  hires?: HiresOptions;
  /** LoRAs for this generation, on top of those given to load(). */
  loras?: LoraSpec[];
  /** Folder of the LoRAs that `<lora:name:w>` tags in the prompt name (`name.safetensors`). */
  loraDir?: string;
  /** 'a1111' (default): AUTOMATIC1111's emphasis, BREAK, chunks of 75 and prompt editing; 'plain': diffusers' truncation at 77 tokens. */
  promptSyntax?: PromptSyntax;
  /** DeepCache: the whole U-Net every `interval` steps, its deep feature reused between (pipeline/deepcache.ts). */
  deepcache?: DeepCacheOptions;
  /** A1111's "Negative Guidance minimum sigma" (NGMS): below this sigma every other call skips the negative prompt; 0 = off. */
  sMinUncond?: number;
  /** NGMS on every call below the sigma, not every other one (A1111's s_min_uncond_all). */
  sMinUncondAll?: boolean;
  /**
   * A1111's batch_cond_uncond: true (default) runs the negative and the prompt's halves of a
   * guided step as one batch; false, as two calls of half the batch, which about halves the
   * memory the U-Net's and ControlNets' activations hold (3.6 GiB less for SD 1.5 at 1024² with a
   * ControlNet, its steps 9% slower). The images are the same either way.
   */
  batchCondUncond?: boolean;
  /** MultiDiffusion (diffusers' panorama pipeline): denoise overlapping latent views and average them, every pass. */
  tiling?: TilingOptions;
  /**
   * A1111's SD upscale (needs initImage): upscale, redraw in tiles of width x height with
   * `strength`, feather the seams; `batch` upscales with seeds seed, seed + 1, ….
   */
  sdUpscale?: SdUpscaleOptions;
  /** ControlNet units: their residuals are summed (several ControlNets at once); see ControlNetUnit. */
  controlnets?: ControlNetUnit[];
}

export interface StepInfo {
  step: number;
  total: number;
  timestep: number;
  /** 'hires' for the steps of the hires fix's second pass; 'upscale' for an upscaler model's tiles before it. */
  phase: 'denoise' | 'decode' | 'hires' | 'upscale';
  /** The latents after this step (for previews). */
  latents?: Tensor;
  /** 1, or 2 in the hires fix's second pass. */
  pass?: 1 | 2;
  /** SD upscale: the redraw (tile, then seam) in progress, of `count`. */
  tile?: { index: number; count: number };
}

export interface GenerateCallbacks {
  onStep?: (info: StepInfo) => void;
  /**
   * The slow phases of this call (also heard by load's listener): graph building and session
   * creation at a new size (inside the first step), prompt encoding, VAE encoding and decoding.
   */
  onProgress?: ProgressListener;
  onWarning?: (message: string) => void;
  /** Aborting stops after the current step; generate then rejects with an Error named 'AbortError'. */
  signal?: AbortSignal;
}

/** What one denoising pass used. */
export interface PassInfo {
  pass: 1 | 2;
  width: number;
  height: number;
  /** Steps actually run (after the strength cut). */
  steps: number;
  /** The attention as used: ToDo's 'auto' factor resolved for this size (for the view's size when tiled). */
  attention: AttentionOptions;
  /** DeepCache as this pass ran it (absent: off). */
  deepcache?: ResolvedDeepCache;
  /** U-Net evaluations: whole, shallow (DeepCache), prompt's half alone (NGMS). */
  evaluations: PassEvaluations;
  /** MultiDiffusion: the views denoised per step. */
  views?: number;
}

/** One U-Net evaluation of a pass, as the pass's noise predictor will run it. */
export interface PlannedEvaluation extends EvaluationKind {
  timestep: number;
  /** Whether ToDo is on (its stopAt). */
  attentionActive: boolean;
}

/** A pass of a generation, laid out before it runs (StableDiffusion.parts). */
export interface PassPart {
  /** What the pass will report: size, steps, attention as used, DeepCache and its U-Net evaluations. */
  info: PassInfo;
  /** Every U-Net evaluation of the pass, in order. */
  evaluations: PlannedEvaluation[];
  /** The latents it denoises: [batch, channels, height, width]. */
  latentDims: number[];
  /**
   * The pass's noise predictor, set up as generate sets it up (attention, sessions kept,
   * DeepCache, NGMS): `predict(call, …)` runs evaluation `call` (a shallow one after a whole one).
   */
  predictor(): Promise<NoisePredictor>;
}

/** A text-to-image generation (with or without the hires fix) in pieces that run one by one. */
export interface GenerationParts {
  settings: GenerateSettings;
  passes: PassPart[];
  /** Each pass's text conditioning as generate encodes it (at the pass's first step). */
  encode(): Promise<Conditioning[]>;
  /** generate's VAE decode of latents of the last pass's size: images [B, 3, H, W] in [-1, 1]. */
  decode(latents: Tensor): Promise<Tensor>;
}

/** The settings actually used, defaults filled in. */
export type GenerateSettings = Required<Omit<GenerateOptions, 'latents' | 'negativePrompt' | 'initImage' | 'strength' | 'strengthRule' | 'mask' | 'hires' | 'loras' | 'loraDir' | 'sampler' | 'timestepSpacing' | 'eta' | 'deepcache' | 'tiling' | 'sdUpscale' | 'controlnets'>> & {
  sampler: SamplerName;
  /** The spacing asked for; absent: the model's own. */
  timestepSpacing?: TimestepSpacing;
  /** tcd's γ as used. */
  eta?: number;
  negativePrompt: string;
  latentsFromFile: boolean;
  initImage?: { width: number; height: number };
  strength?: number;
  /** Set when img2img or the hires fix runs. */
  strengthRule?: StrengthRule;
  mask?: { blur: number; invert: boolean; fill: InpaintFill };
  deepcache?: ResolvedDeepCache;
  /** `upscaler`: one of HIRES_UPSCALERS, or the upscaler model's name. */
  hires?: { scale: number; steps: number; denoise: number; upscaler: string; attention: AttentionOptions; deepcache?: ResolvedDeepCache; width: number; height: number };
  tiling?: Tiling;
  sdUpscale?: SdUpscaleSettings;
};

export interface GeneratedImage extends RgbImage {
  seed: number;
  /** The generation parameters in AUTOMATIC1111's text format. */
  parameters: string;
}

export interface GenerateResult {
  images: GeneratedImage[];
  settings: GenerateSettings & {
    passes: PassInfo[];
    /** Every LoRA applied: load-time, the options' and the prompt's. */
    loras: UsedLora[];
    /** The ControlNet units as run (defaults filled in). */
    controlnets: ControlNetSettings[];
  };
  timings: { textMs: number; denoiseMs: number; decodeMs: number };
}

const CLASS_TO_SAMPLER: Record<string, SamplerName> = {
  PNDMScheduler: 'pndm',
  DDIMScheduler: 'ddim',
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler-a',
  DPMSolverMultistepScheduler: 'dpmpp-2m',
  HeunDiscreteScheduler: 'heun',
  LMSDiscreteScheduler: 'lms',
  UniPCMultistepScheduler: 'unipc',
  LCMScheduler: 'lcm',
  TCDScheduler: 'tcd',
};

/** Latent columns wrapped onto each side of a circular panorama for the VAE decode (diffusers' padding=8). */
const CIRCULAR_DECODE_PADDING = 8;

function fail(msg: string): never {
  throw new UserError(msg);
}



/** A pass's text conditioning (SDXL's added inputs included), per sampling step for prompt editing. */
interface PassConditioning {
  at(step: number): Conditioning;
  /** The same conditioning at every step, when it is (the device loop needs that). */
  fixed?: Conditioning;
}

/** What decides a pass's U-Net evaluations. */
interface PassSchedule {
  scheduler: Scheduler;
  timesteps: readonly number[];
  cfg: number;
  ngms: NgmsOptions;
  attention: AttentionOptions;
  deepcache?: ResolvedDeepCache;
  pass: 1 | 2;
  /** U-Net sessions kept open (unetSessions): 2 where a hires fix keeps each pass's. */
  sessions: 1 | 2;
  /** A guided step's halves in one batch (GenerateOptions.batchCondUncond). */
  batchCondUncond: boolean;
}

interface DenoiseRun extends PassSchedule {
  x: Tensor;
  cond: PassConditioning;
  /** Inpainting: resets the unmasked latents after a step, given the next timestep (undefined after the last). */
  blend?: (x: Tensor, next: number | undefined) => Tensor;
  tiling?: Tiling;
  /** ControlNets: the residuals the U-Net adds at each step. */
  control?: ControlNetPass;
}

function ngmsOf(s: GenerateSettings): NgmsOptions {
  return { sigma: s.sMinUncond, allSteps: s.sMinUncondAll };
}

/** Whether ToDo is on at a step of the pass (its stopAt counts the pass's steps as diffusers does: Heun's pairs are one). */
function attentionActiveAt(run: Pick<PassSchedule, 'attention' | 'scheduler' | 'timesteps'>, step: number): boolean {
  const stopAt = run.attention.method === 'todo' ? (run.attention.stopAt ?? 1) : 1;
  return todoActiveAt(stopAt, step, Math.ceil(run.timesteps.length / run.scheduler.order));
}

/** Whether NGMS can skip a negative half in this pass: one is run (guidance-embedding.ts) and a sigma is set. */
function ngmsActive(run: Pick<DenoiseRun, 'cfg' | 'ngms'>, unet: UNetConfig): boolean {
  return classifierFreeGuidance(run.cfg, unet) && run.ngms.sigma > 0;
}

/** Whether a pass runs a guided step's halves as two calls: asked for (batchCondUncond off), or under NGMS, whose prompt-only calls then share the U-Net's one session. */
function splitsGuidance(run: Pick<DenoiseRun, 'cfg' | 'ngms' | 'batchCondUncond'>, unet: UNetConfig): boolean {
  return !run.batchCondUncond || ngmsActive(run, unet);
}

export class StableDiffusion {
  private constructor(
    readonly modelDir: string,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: ClipTextEncoder,
    readonly unet: UNet,
    /** The model's VAE, or the TAESD that replaced it (load's `vae`). */
    readonly vae: VAE | TinyVAE,
    readonly schedulerConfig: Record<string, unknown>,
    private readonly loras: PipelineLoras,
    private readonly progress: ProgressRelay,
    /** SDXL's two tokenizers and text encoders (the first ones are also `tokenizer`, `textEncoder`). */
    readonly sdxl?: SdxlConditioner,
  ) {
    this.defaultAttention = unet.attention.options;
  }

  /** The attention given at load time: generate() switches the U-Net per pass, this stays the default. */
  private readonly defaultAttention: AttentionOptions;

  /** A TAESD beside the VAE (load's `taesd`, or loadTaesd). */
  private tiny?: TinyVAE;

  /**
   * `model`: a diffusers folder or a single-file checkpoint (.safetensors or .ckpt, LDM / SGM layout).
   * `onProgress` hears each part's loading (`load:unet`, …) and, for the pipeline's life, the
   * graphs and sessions made lazily on the first run at a size.
   */
  static async load(model: string, options: RuntimeOptions & ModelSourceOptions & { attention?: AttentionOptions; loras?: LoraSpec[] } = {}): Promise<StableDiffusion> {
    const { loras, ...rest } = options;
    const progress = new ProgressRelay(rest.onProgress);
    const opts = { ...rest, onProgress: progress.emit };
    const part = <T>(name: string, load: () => Promise<T>): Promise<T> => phase(progress.emit, `load:${name}`, load);
    const modelDir = resolve(model);
    const scheduler = schedulerConfig(modelDir, opts);
    // One part after another: loading is CPU work, and each phase's time is then its own.
    const unet = await part('unet', () => UNet.load(modelDir, opts));
    const vae = await part('vae', () => modelVAE(modelDir, opts));
    if (vae.config.latentChannels !== unet.config.outChannels) {
      fail(`the VAE has ${vae.config.latentChannels} latent channels but the U-Net works on ${unet.config.outChannels}: the VAE belongs to another model family`);
    }
    if (detectModelFamily(modelDir, unet.config) === 'sdxl') {
      const sdxl = await part('text_encoders', () => modelSdxlConditioner(modelDir, unet.config, opts));
      const sdxlLoras = new PipelineLoras([...sdxl.textEncoders, unet], loras ?? []);
      sdxlLoras.useBase(opts.onWarning);
      return new StableDiffusion(modelDir, sdxl.tokenizers[0], sdxl.textEncoders[0], unet, vae, scheduler, sdxlLoras, progress, sdxl).withTaesd(opts);
    }
    const tokenizer = await part('tokenizer', () => modelTokenizer(modelDir, { onWarning: opts.onWarning }));
    const textEncoder = await part('text_encoder', () => ClipTextEncoder.load(modelDir, opts));
    if (textEncoder.config.hiddenSize !== unet.config.crossAttentionDim) {
      fail(`text encoder width ${textEncoder.config.hiddenSize} does not match the U-Net's cross_attention_dim ${unet.config.crossAttentionDim}; the components come from different models`);
    }
    const pipeLoras = new PipelineLoras([textEncoder, unet], loras ?? []);
    pipeLoras.useBase(opts.onWarning);
    return new StableDiffusion(modelDir, tokenizer, textEncoder, unet, vae, scheduler, pipeLoras, progress).withTaesd(opts);
  }

  private async withTaesd(opts: ModelSourceOptions & RuntimeOptions): Promise<StableDiffusion> {
    const taesd = opts.taesd;
    if (taesd) await this.phase('load:taesd', () => this.loadTaesd(taesd, opts));
    return this;
  }

  /** The VAE methods generate() can use here: 'full' with the model's VAE, 'taesd' with a TAESD (as the VAE or beside it). */
  get vaeMethods(): VaeMethod[] {
    return this.vae instanceof VAE ? ['full', ...(this.tiny ? (['taesd'] as const) : [])] : ['taesd'];
  }

  /** The TAESD beside the model's VAE, if one was loaded (`taesd` at load, or loadTaesd). */
  get taesd(): TinyVAE | undefined {
    return this.tiny;
  }

  /**
   * Loads a TAESD beside the model's VAE (replacing one loaded before), for `vaeDecoder` /
   * `vaeEncoder: 'taesd'`: one TAESD, or a folder with one per family (A1111's models/VAE-approx).
   * A TAESD of the other family is refused.
   */
  async loadTaesd(source: string, opts: Pick<ModelSourceOptions, 'taesdFamily'> & RuntimeOptions = {}): Promise<TinyVAE> {
    const tiny = await modelTinyVAE(this.modelDir, source, '--taesd', { ...this.unet.runtime, ...opts });
    await this.tiny?.dispose();
    this.tiny = tiny;
    return tiny;
  }

  /** The VAE for decoding or encoding by `method`; fails naming what to load when there is none. */
  private vaeFor(method: VaeMethod, use: 'decoding' | 'encoding'): VAE | TinyVAE {
    if (method === 'full') {
      if (this.vae instanceof VAE) return this.vae;
      fail(`the pipeline's VAE is a TAESD (${this.vae.source}, load's vae option): there is no full VAE for ${use}; load without it and pass the TAESD as taesd (--taesd) to have both`);
    }
    const tiny = this.vae instanceof TinyVAE ? this.vae : (this.tiny ?? fail(`TAESD ${use} needs a TAESD: load with { taesd: path } (--taesd FILE|DIR), or pass it as the VAE (--vae)`));
    if (use === 'decoding') tiny.requireDecoder();
    else tiny.requireEncoder();
    return tiny;
  }

  get family(): ModelFamily {
    return this.sdxl ? 'sdxl' : 'sd';
  }

  /** The folder's or checkpoint file's name, without `.safetensors` / `.ckpt` (as A1111 names checkpoints). */
  get modelName(): string {
    return basename(this.modelDir).replace(/\.(safetensors|ckpt)$/i, '');
  }

  /** The model's own sampler (from its scheduler config), used when none is asked for. */
  get defaultSampler(): SamplerName {
    const sampler = CLASS_TO_SAMPLER[String(this.schedulerConfig._class_name)] ?? 'euler';
    return sampler === 'dpmpp-2m' && this.schedulerConfig.algorithm_type === 'sde-dpmsolver++' ? 'dpmpp-2m-sde' : sampler;
  }

  /** The size the model was trained at: unet sample_size × VAE scale. */
  get nativeSize(): number {
    return nativeImageSize(this.unet.rawConfig, this.vae.config.scale);
  }

  private resolve(o: GenerateOptions): GenerateSettings {
    if (typeof o.prompt !== 'string') fail('prompt must be a string');
    const scale = this.vae.config.scale;
    const grid = Math.max(8, scale);
    const init = o.initImage;
    if (init !== undefined) checkRgbImage(init, 'initImage');
    // Without a size, img2img keeps the image's, rounded down to the grid (diffusers' preprocess).
    const width = o.width ?? (init ? init.width - (init.width % grid) : this.nativeSize);
    const height = o.height ?? (init ? init.height - (init.height % grid) : this.nativeSize);
    for (const [name, v] of [
      ['width', width],
      ['height', height],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0 || v % 8 !== 0 || v % scale !== 0) {
        fail(`${name} must be a positive multiple of ${grid}; got ${v} (try ${Math.max(8, Math.round(v / 8) * 8) || 8})`);
      }
    }
    const steps = o.steps ?? 20;
    if (!Number.isInteger(steps) || steps < 1 || steps > 1000) fail(`steps must be an integer from 1 to 1000; got ${steps}`);
    const batch = o.batch ?? 1;
    if (!Number.isInteger(batch) || batch < 1 || batch > 64) fail(`batch must be an integer from 1 to 64; got ${batch}`);
    const cfg = o.cfg ?? 7.5;
    if (!Number.isFinite(cfg) || cfg < 0) fail(`cfg must be a number >= 0; got ${cfg}`);
    const picked = resolveSampler(o.sampler ?? this.defaultSampler);
    const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
    if (!Number.isSafeInteger(seed) || seed < 0) fail(`seed must be a non-negative integer; got ${seed}`);
    const attention = resolveAttention(o.attention ?? this.defaultAttention).options;
    const clipSkip = o.clipSkip ?? 1;
    const vaeTiling = o.vaeTiling ?? 'auto';
    const promptSyntax = o.promptSyntax ?? 'a1111';
    if (!PROMPT_SYNTAXES.includes(promptSyntax)) fail(`promptSyntax must be one of ${PROMPT_SYNTAXES.join(', ')}; got "${String(promptSyntax)}"`);
    const ownMethod: VaeMethod = this.vae instanceof TinyVAE ? 'taesd' : 'full';
    const vaeDecoder = o.vaeDecoder ?? ownMethod;
    const vaeEncoder = o.vaeEncoder ?? ownMethod;
    for (const [name, v] of [
      ['vaeDecoder', vaeDecoder],
      ['vaeEncoder', vaeEncoder],
    ] as const) {
      if (!VAE_METHODS.includes(v)) fail(`${name} must be one of ${VAE_METHODS.join(', ')}; got "${String(v)}"`);
    }
    this.vaeFor(vaeDecoder, 'decoding');
    if (init || o.hires?.upscaler === 'lanczos') this.vaeFor(vaeEncoder, 'encoding');
    const settings: GenerateSettings = {
      prompt: o.prompt,
      negativePrompt: o.negativePrompt ?? '',
      width,
      height,
      steps,
      cfg,
      seed,
      batch,
      sampler: picked.sampler,
      karras: o.karras ?? picked.karras ?? false,
      attention,
      clipSkip,
      vaeTiling,
      vaeDecoder,
      vaeEncoder,
      promptSyntax,
      latentsFromFile: o.latents !== undefined,
      sMinUncond: o.sMinUncond ?? 0,
      sMinUncondAll: o.sMinUncondAll ?? false,
      batchCondUncond: o.batchCondUncond ?? true,
    };
    if (o.timestepSpacing !== undefined) settings.timestepSpacing = o.timestepSpacing;
    const eta = o.eta ?? (picked.sampler === 'tcd' ? TCD_DEFAULT_GAMMA : undefined);
    if (eta !== undefined) settings.eta = eta;
    if (typeof settings.sMinUncond !== 'number' || !(settings.sMinUncond >= 0)) fail(`sMinUncond (NGMS) must be a sigma >= 0 (0 = off); got ${JSON.stringify(o.sMinUncond)}`);
    if (typeof settings.sMinUncondAll !== 'boolean') fail(`sMinUncondAll must be true or false; got ${JSON.stringify(o.sMinUncondAll)}`);
    if (typeof settings.batchCondUncond !== 'boolean') fail(`batchCondUncond must be true or false; got ${JSON.stringify(o.batchCondUncond)}`);
    if (o.deepcache) settings.deepcache = resolveDeepCache(o.deepcache, this.unet.config);
    if (init) {
      if (o.latents) fail('initial latents and an init image exclude each other: img2img draws its noise from the seed');
      const strength = o.strength ?? 0.75;
      if (typeof strength !== 'number' || !(strength >= 0 && strength <= 1)) fail(`strength must be a number from 0 to 1 (1 repaints everything); got ${strength}`);
      settings.initImage = { width: init.width, height: init.height };
      settings.strength = strength;
    } else {
      if (o.strength !== undefined) fail('strength applies to image-to-image: give an init image too (or drop strength)');
      if (o.mask) fail('a mask needs the image it masks: give an init image too');
    }
    if (o.mask) {
      if (o.hires) fail('hires fix and inpainting do not combine: inpaint at the final size instead');
      const m = o.mask;
      checkRgbImage(m.image, 'mask.image');
      const blur = m.blur ?? 4;
      if (typeof blur !== 'number' || !(blur >= 0 && blur <= 64)) fail(`mask blur must be a number of pixels from 0 to 64; got ${blur}`);
      const fill = m.fill ?? 'original';
      if (!INPAINT_FILLS.includes(fill)) fail(`unknown mask fill "${String(fill)}"; use one of ${INPAINT_FILLS.join(', ')}`);
      settings.mask = { blur, invert: m.invert ?? false, fill };
    }
    if (o.hires) {
      const h = o.hires;
      const size = hiresSize(width, height, h.scale, grid);
      const hSteps = h.steps ?? steps;
      if (!Number.isInteger(hSteps) || hSteps < 1 || hSteps > 1000) fail(`hires steps must be an integer from 1 to 1000; got ${hSteps}`);
      if (typeof h.denoise !== 'number' || !(h.denoise >= 0 && h.denoise <= 1)) fail(`hires denoise must be a number from 0 to 1; got ${h.denoise}`);
      const model = h.upscaler instanceof Upscaler;
      if (!model && !(HIRES_UPSCALERS as readonly unknown[]).includes(h.upscaler)) {
        fail(`unknown hires upscaler "${String(h.upscaler)}"; use one of ${HIRES_UPSCALERS.join(', ')}, or an upscaler model (loadUpscaler)`);
      }
      const hAttention = h.attention ? resolveAttention(h.attention).options : attention;
      const hDeepCache = h.deepcache === undefined ? settings.deepcache : h.deepcache && resolveDeepCache(h.deepcache, this.unet.config);
      settings.hires = {
        scale: h.scale,
        steps: hSteps,
        denoise: h.denoise,
        upscaler: h.upscaler instanceof Upscaler ? h.upscaler.name : h.upscaler,
        attention: hAttention,
        ...(hDeepCache && { deepcache: hDeepCache }),
        ...size,
      };
    }
    if (o.tiling) {
      if (typeof o.tiling !== 'object') fail('tiling must be an object such as { window: 64, stride: 8 } ({} for the defaults)');
      settings.tiling = resolveTiling(o.tiling, 2 ** (this.unet.config.blockOutChannels.length - 1));
      // A circular window wider than the canvas fails here, before any work (a hires pass is only wider).
      latentViews(height / scale, width / scale, settings.tiling);
    }
    if (init || o.hires) {
      const rule = o.strengthRule ?? 'diffusers';
      if (!STRENGTH_RULES.includes(rule)) fail(`unknown strength rule "${String(rule)}"; use one of ${STRENGTH_RULES.join(', ')}`);
      settings.strengthRule = rule;
    } else if (o.strengthRule !== undefined) {
      fail('strengthRule applies to image-to-image and the hires fix: give an init image or hires options (or drop it)');
    }
    return settings;
  }

  /**
   * The text conditioning of one pass: A1111's prompt syntax per step (or plain), for SDXL
   * through both encoders, with the pooled vector and time ids (this pass's size). SDXL's plain
   * syntax is diffusers' own path. Prompt editing in the hires fix's second pass counts on from
   * the first pass's steps (A1111). Reported as the phase `encode:prompt`.
   */
  private passConditioning(s: GenerateSettings, prompt: string, negativePrompt: string | undefined, pass: 1 | 2): Promise<PassConditioning> {
    return this.phase('encode:prompt', async (): Promise<PassConditioning> => {
      const size = pass === 2 ? { width: s.hires!.width, height: s.hires!.height, steps: s.hires!.steps, firstPassSteps: s.steps } : { width: s.width, height: s.height, steps: s.steps };
      const guided = classifierFreeGuidance(s.cfg, this.unet.config);
      const sdxl = this.sdxl;
      if (sdxl && s.promptSyntax === 'plain') {
        const c = await sdxl.encode({ prompt, negativePrompt, batch: s.batch, guided, clipSkip: s.clipSkip, width: size.width, height: size.height });
        await this.yieldTextEncoders();
        return { at: () => c, fixed: c };
      }
      const request = {
        prompt,
        negativePrompt: negativePrompt ?? '',
        steps: size.steps,
        batch: s.batch,
        guided,
        syntax: s.promptSyntax,
        firstPassSteps: size.firstPassSteps,
        zeroNegative: sdxl !== undefined && negativePrompt === undefined && sdxl.forceZerosForEmptyPrompt,
      };
      const encoders = sdxl?.promptEncoders(s.clipSkip) ?? [{ tokenizer: this.tokenizer, encode: async (ids: IntTensor) => ({ hidden: await this.textEncoder.forward(ids, { clipSkip: s.clipSkip }) }) }];
      const c = await PromptConditioning.build(request, encoders);
      await this.yieldTextEncoders();
      const timeIds = sdxl?.timeIds(c.at(0).dims[0]!, size.width, size.height);
      const at = (step: number): Conditioning => ({ encoderHiddenStates: c.at(step), ...(timeIds ? { added: { textEmbeds: c.pooledAt(step)!, timeIds } } : {}) });
      return { at, fixed: c.scheduled ? undefined : at(0) };
    });
  }

  /**
   * One denoising pass: the noise predictions (guidance, NGMS, DeepCache; per batch of
   * MultiDiffusion's views when tiled, each batch with its own DeepCache feature), the scheduler's
   * steps, the inpainting blend, callbacks and abort.
   */
  private async denoise(run: DenoiseRun, cb: GenerateCallbacks): Promise<{ latents: Tensor; evaluations: PassEvaluations }> {
    const { scheduler, timesteps, cond } = run;
    let x = run.x;
    const batch = x.dims[0]!;
    const predictor = await this.noisePredictor(run);
    // Heun (order 2) evaluates the U-Net twice per step; steps are counted as diffusers counts them.
    const total = Math.ceil(timesteps.length / scheduler.order);
    const phase = run.pass === 2 ? 'hires' : 'denoise';
    const tiles = run.tiling && new MultiDiffusion(x.dims, run.tiling, scheduler);
    for (const [i, t] of timesteps.entries()) {
      const step = Math.floor(i / scheduler.order);
      const evaluate: ModelEvaluation = async (input, tt, s, views) => {
        if (cb.signal?.aborted) throw abortError('generation');
        const c = conditioningForViews(cond.at(s), input.dims[0]! / batch, predictor.guided ? 2 : 1);
        return predictor.predict(i, input, tt, c, attentionActiveAt(run, s), views);
      };
      x = tiles ? await tiles.step(x, t, step, evaluate) : scheduler.step(await evaluate(scheduler.scaleModelInput(x, t), t, step), t, x);
      if (run.blend) x = run.blend(x, timesteps[i + 1]);
      if ((i + 1) % scheduler.order === 0 || i === timesteps.length - 1) {
        cb.onStep?.({ step: Math.ceil((i + 1) / scheduler.order), total, timestep: t, phase, latents: x, pass: run.pass });
      }
      if (cb.signal?.aborted) throw abortError('generation');
    }
    // A pass that runs no step (strength 0) still gets the final inpainting blend.
    return { latents: timesteps.length === 0 && run.blend ? run.blend(x, undefined) : x, evaluations: predictor.evaluations };
  }

  /**
   * A pass's predictor, the U-Net switched to the pass's attention. Every call of a pass has one
   * batch size (NGMS splits the guided calls), so the U-Net keeps one session per graph, or one
   * per pass in a hires fix (unetSessions); a ControlNet, which runs beside each evaluation,
   * keeps one for each of DeepCache's two graphs.
   */
  private async noisePredictor(run: PassSchedule & Pick<DenoiseRun, 'control'>): Promise<NoisePredictor> {
    this.unet.setAttention(run.attention);
    await Promise.all([this.unet.keepSessions(run.sessions), run.control?.keepSessions(run.deepcache ? 2 : 1)]);
    return new NoisePredictor({ ...this.predictorOptions(run), ...(run.control && { control: run.control }) });
  }

  /**
   * Whether the text encoders close their sessions once a prompt is encoded: where a U-Net
   * session, while it starts (the file's weights, their copy in the compute type and packed
   * copies: about twice the weights), takes more than 60% of the machine's memory, as SDXL in
   * fp32 does on 24 GiB. The encoders' 3.5 GB (SDXL) would not fit beside it; they open again
   * at the next encoding (seconds, against the minutes of an SDXL generation on a CPU).
   */
  textEncodersYield(): boolean {
    return 2 * this.unet.sessionWeightBytes() > 0.6 * totalmem();
  }

  private async yieldTextEncoders(): Promise<void> {
    if (this.textEncodersYield()) await (this.sdxl ? this.sdxl.dispose() : this.textEncoder.dispose());
  }

  /**
   * Whether a hires fix keeps both passes' U-Net sessions open: a session started anew for each
   * pass of each generation costs what a few steps do, so both stay open where two copies of the
   * weights take at most 40% of the machine's memory (SD 1.5 in fp32 on 24 GiB; not SDXL there).
   */
  hiresKeepsSessions(): boolean {
    return 2 * this.unet.sessionWeightBytes() <= 0.4 * totalmem();
  }

  private unetSessions(s: GenerateSettings): 1 | 2 {
    return s.hires && this.hiresKeepsSessions() ? 2 : 1;
  }

  /** The noise predictor's rules for a pass (ControlNets aside): guidance, NGMS, DeepCache's whole steps. */
  private predictorOptions(run: PassSchedule): NoisePredictorOptions {
    const dc = run.deepcache;
    return {
      unet: this.unet,
      cfg: run.cfg,
      guided: classifierFreeGuidance(run.cfg, this.unet.config),
      ngms: run.ngms,
      sigmaOf: timestepSigma(this.schedulerConfig),
      splitGuidance: splitsGuidance(run, this.unet.config),
      ...(dc && { deepcache: { point: { block: dc.block, layer: dc.layer }, full: deepCacheFullSteps(dc, run.scheduler.timesteps, run.timesteps, run.scheduler.order) } }),
    };
  }

  /**
   * A pass's scheduler and the timesteps it evaluates: all of them, or the part an image-to-image
   * strength asks for (the init image's; the hires fix's second pass at its denoise), with the
   * timestep its init latents are noised to (strength.ts).
   */
  private passSchedule(s: GenerateSettings, pass: 1 | 2, randn: (dims: readonly number[]) => Float32Array): { scheduler: Scheduler; timesteps: readonly number[]; noiseAt?: number } {
    const scheduler = this.scheduler(s, randn);
    if (pass === 2) return { scheduler, ...strengthRun(scheduler, this.strengthRequest(s, s.hires!.steps, s.hires!.denoise, true)) };
    if (s.strength !== undefined) return { scheduler, ...strengthRun(scheduler, this.strengthRequest(s, s.steps, s.strength, false)) };
    scheduler.setTimesteps(s.steps);
    return { scheduler, timesteps: scheduler.timesteps };
  }

  /** The sampler these settings ask for, its noise drawn from `randn` (the pass's generator). */
  private scheduler(s: GenerateSettings, randn: (dims: readonly number[]) => Float32Array): Scheduler {
    return createScheduler(s.sampler, this.schedulerConfig, { karras: s.karras, timestepSpacing: s.timestepSpacing, eta: s.eta, randn });
  }

  private phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return phase(this.progress.emit, name, fn);
  }

  /**
   * What a pass ran, for the results and the infotext: its attention with ToDo's 'auto' resolved
   * on the first attention level's grid of the latent the U-Net sees (a view's, when tiled).
   */
  private passInfo(pass: 1 | 2, width: number, height: number, steps: number, a: AttentionOptions, tiling: Tiling | undefined, used: Pick<PassInfo, 'deepcache' | 'evaluations'>): PassInfo {
    const scale = this.vae.config.scale;
    const views = tiling && latentViews(height / scale, width / scale, tiling);
    let [h, w] = views ? [views[0]!.height, views[0]!.width] : [height / scale, width / scale];
    const info: PassInfo = { pass, width, height, steps, attention: a, ...used, ...(views && { views: views.length }) };
    if (a.method !== 'todo' || a.factor !== 'auto') return info;
    for (let i = 0; i < (attentionLevels(this.unet.config)[0] ?? 0); i++) [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
    return { ...info, attention: { ...a, factor: autoTodoFactor([h, w]) } };
  }

  /**
   * Latents → image [B, 3, H, W] in [-1, 1] by the VAE or TAESD `s` names, tiled when asked or
   * (auto) above 1024x1024 (a TAESD too: it has no attention, but its memory, linear in the
   * pixels, is still about 1 KiB per output pixel untiled); a circular panorama decodes with 8
   * wrapped latent columns on each side, cut off after.
   */
  private async decodeLatents(x: Tensor, s: Pick<GenerateSettings, 'vaeTiling' | 'vaeDecoder' | 'tiling'>): Promise<Tensor> {
    const vae = this.vaeFor(s.vaeDecoder, 'decoding');
    const scale = vae.config.scale;
    const padding = s.tiling?.circular ? Math.min(CIRCULAR_DECODE_PADDING, x.dims[3]!) : 0;
    const padded = padding ? padCircular(x, padding) : x;
    const z = { data: padded.data.map((v) => v / vae.config.scalingFactor), dims: padded.dims };
    const tiles = this.vaeTiles(padded.dims, scale, s.vaeTiling);
    const image = await this.phase(`decode:${vae instanceof TinyVAE ? 'taesd' : 'vae'}`, () => (tiles ? decodeTiled(z, scale, (t) => vae.decode(t), tiles) : vae.decode(z)));
    return padding ? cropColumns(image, padding * scale, x.dims[3]! * scale) : image;
  }

  /** The init latents of images [B, 3, H, W] by the VAE or TAESD `s` names; the VAE's encoder tiled by the rule decoding follows. */
  private encodeLatents(images: Tensor, s: Pick<GenerateSettings, 'vaeTiling' | 'vaeEncoder' | 'batch'>, randn: (dims: readonly number[]) => Float32Array): Promise<Tensor> {
    const vae = this.vaeFor(s.vaeEncoder, 'encoding');
    if (vae instanceof TinyVAE) return this.phase('encode:taesd', () => encodeInitLatents(vae, images, randn, s.batch));
    const scale = vae.config.scale;
    const [b, c, h, w] = images.dims as [number, number, number, number];
    const tiles = this.vaeTiles([b, c, h / scale, w / scale], scale, s.vaeTiling);
    return this.phase('encode:vae', () => encodeInitLatents(vae, images, randn, s.batch, tiles && ((t) => encodeTiled(t, scale, (u) => vae.encodeDistribution(u), tiles))));
  }

  /** VAE tiles (latent pixels, 512 px a side) when tiling is asked for or (auto) the image is over 1024x1024; else undefined. */
  private vaeTiles(latent: readonly number[], scale: number, vaeTiling: boolean | 'auto'): TileOptions | undefined {
    const [, , h, w] = latent as [number, number, number, number];
    if (!(vaeTiling === true || (vaeTiling === 'auto' && h * w * scale * scale > 1024 * 1024))) return undefined;
    const tile = Math.max(16, Math.round(512 / scale));
    return { tile, overlap: Math.round(tile / 4) };
  }

  /**
   * generate(o)'s pieces, laid out without running them: each pass's U-Net evaluations by the
   * noise predictor's own rules (DeepCache's whole and shallow steps, NGMS's prompt-only calls at
   * the sampler's sigmas) and its predictor, the text encoding and the VAE decode, for running
   * and timing them one by one (`bench image --compose`). Text-to-image, with or without a hires
   * fix that upscales latents; what else generate takes (an init image, initial latents,
   * MultiDiffusion tiling, SD upscale, ControlNets, an image upscaler's round trip) is refused by name.
   */
  parts(o: GenerateOptions): GenerationParts {
    const uncovered = { initImage: o.initImage, mask: o.mask, latents: o.latents, tiling: o.tiling, sdUpscale: o.sdUpscale, controlnets: o.controlnets?.length ? o.controlnets : undefined };
    const given = Object.entries(uncovered).filter(([, v]) => v !== undefined).map(([k]) => k);
    if (given.length > 0) fail(`parts() lays out text-to-image generations (with or without a latent hires fix); it does not cover ${given.join(', ')}`);
    const u = o.hires?.upscaler;
    if (u !== undefined && u !== 'latent' && u !== 'latent-nearest') {
      fail(`parts() lays out hires fixes that upscale latents ('latent', 'latent-nearest'); the ${hiresUpscalerLabel(u)} upscaler's decode, upscale and encode are not among its pieces`);
    }
    const s = this.resolve(o);
    const generator = new TorchGenerator(s.seed);
    const randn = (dims: readonly number[]): Float32Array => generator.randn(dims);
    const scale = this.vae.config.scale;
    const passes = (s.hires ? ([1, 2] as const) : ([1] as const)).map((pass): PassPart => {
      const at = pass === 2 ? s.hires! : s;
      const run: PassSchedule = { ...this.passSchedule(s, pass, randn), cfg: s.cfg, ngms: ngmsOf(s), attention: at.attention, deepcache: at.deepcache, pass, sessions: this.unetSessions(s), batchCondUncond: s.batchCondUncond };
      const options = this.predictorOptions(run);
      const evaluations = run.timesteps.map((t, i) => ({ timestep: t, ...evaluationKind(options, i, t), attentionActive: attentionActiveAt(run, Math.floor(i / run.scheduler.order)) }));
      const counts = { full: evaluations.filter((e) => !e.shallow).length, shallow: evaluations.filter((e) => e.shallow).length, promptOnly: evaluations.filter((e) => e.promptOnly).length };
      return {
        info: this.passInfo(pass, at.width, at.height, run.timesteps.length, at.attention, undefined, { evaluations: counts, ...(at.deepcache && { deepcache: at.deepcache }) }),
        evaluations,
        latentDims: [s.batch, this.unet.config.inChannels, at.height / scale, at.width / scale],
        predictor: () => this.noisePredictor(run),
      };
    });
    return {
      settings: s,
      passes,
      encode: async () => {
        const prompt = this.loras.forGeneration(s.prompt, o.loras, o.loraDir).prompt;
        const out: Conditioning[] = [];
        for (const p of passes) out.push((await this.passConditioning(s, prompt, o.negativePrompt, p.info.pass)).at(0));
        return out;
      },
      decode: (latents) => this.decodeLatents(latents, s),
    };
  }

  async generate(o: GenerateOptions, cb: GenerateCallbacks = {}): Promise<GenerateResult> {
    return this.progress.during(cb.onProgress, () => this.run(o, cb));
  }

  private async run(o: GenerateOptions, cb: GenerateCallbacks): Promise<GenerateResult> {
    if (o.sdUpscale) return sdUpscale((tile, c) => this.run(tile, c), o, cb, this.nativeSize, withFields);
    const resolved = this.resolve(o);
    if (cb.signal?.aborted) throw abortError('generation');
    // The scheduler first: a sampler that does not fit the settings fails before any work.
    const generator = new TorchGenerator(resolved.seed);
    const randn = (dims: readonly number[]): Float32Array => generator.randn(dims);
    // img2img runs the part of the schedule its strength asks for (strength.ts).
    const { scheduler, timesteps, noiseAt } = this.passSchedule(resolved, 1, randn);
    if (this.unet.config.timeCondProjDim !== null && o.negativePrompt) {
      cb.onWarning?.('the negative prompt is not used: this U-Net is guidance-distilled (time_cond_proj_dim, an LCM) and takes the CFG scale as an embedding, with no unconditional pass (as in diffusers)');
    }
    const loras = this.loras.forGeneration(resolved.prompt, o.loras, o.loraDir, cb.onWarning);
    const s = { ...resolved, loras: loras.used };
    const scale = this.vae.config.scale;
    const lh = s.height / scale;
    const lw = s.width / scale;
    const latentDims = [s.batch, this.unet.config.inChannels, lh, lw];
    const original = o.initImage && fitImage(o.initImage, s.width, s.height);
    const mask = o.mask && prepareMask(o.mask, s.width, s.height, lw, lh);
    const control = await this.controlUnits(o.controlnets, s, { image: original, mask: mask?.pixels });

    const t0 = performance.now();
    const cond = await this.passConditioning(s, loras.prompt, o.negativePrompt, 1);
    const t1 = performance.now();

    let x: Tensor;
    let blend: DenoiseRun['blend'];
    let inpaint: { original: RgbImage; mask: Uint8Array } | undefined;
    if (original) {
      const source = mask && s.mask?.fill === 'fill' ? fillMasked(original, mask.pixels) : original;
      let init = await this.encodeLatents(imagesToTensor([source]), s, randn);
      if (mask && (s.mask?.fill === 'latent-noise' || s.mask?.fill === 'latent-nothing')) {
        // A1111 draws this noise from a fresh generator of the seed.
        const inside = s.mask.fill === 'latent-noise' ? new TorchGenerator(s.seed).randn(init.dims) : new Float32Array(init.data.length);
        init = blendLatents({ data: inside, dims: init.dims }, init, mask.latent);
      }
      const start = noiseLatents(scheduler, init, noiseAt, randn);
      x = start.latents;
      if (mask) {
        const keep = init;
        blend = (cur, next) => blendLatents(cur, next === undefined ? keep : scheduler.addNoise(keep, start.noise, next), mask.latent);
        inpaint = { original, mask: mask.pixels };
      }
    } else {
      let noise: Float32Array;
      if (o.latents) {
        const d = o.latents.dims;
        if (d.length !== 4 || d.some((v, i) => v !== latentDims[i]) || o.latents.data.length !== numel(d)) {
          fail(`initial latents have shape [${d.join(', ')}] but batch ${s.batch} at ${s.width}x${s.height} needs [${latentDims.join(', ')}]`);
        }
        noise = Float32Array.from(o.latents.data);
      } else {
        noise = generator.randn(latentDims);
      }
      x = { data: noise.map((v) => v * scheduler.initNoiseSigma), dims: latentDims };
    }

    const first: DenoiseRun = {
      x,
      scheduler,
      timesteps,
      cond,
      cfg: s.cfg,
      ngms: ngmsOf(s),
      attention: s.attention,
      deepcache: s.deepcache,
      pass: 1,
      sessions: this.unetSessions(s),
      batchCondUncond: s.batchCondUncond,
      blend,
      tiling: s.tiling,
      control: this.controlPass(control, s, s, timesteps.length, s.attention, false),
    };
    // The device loop keeps plain text-to-image on the GPU; img2img, inpainting, prompt editing, DeepCache, NGMS, split guidance and ControlNet run here.
    const onDevice =
      !o.initImage && !s.tiling && cond.fixed && !s.deepcache && !splitsGuidance(first, this.unet.config) && control.length === 0 && deviceLoopWanted(this.unet)
        ? await this.denoiseOnDevice(x, s, cond.fixed, cb)
        : null;
    const pass1 = onDevice ? { latents: onDevice, evaluations: { full: timesteps.length, shallow: 0, promptOnly: 0 } } : await this.denoise(first, cb);
    x = pass1.latents;
    const passes: PassInfo[] = [this.passInfo(1, s.width, s.height, timesteps.length, s.attention, s.tiling, { evaluations: pass1.evaluations, ...(s.deepcache && { deepcache: s.deepcache }) })];
    if (o.hires) x = await this.hiresPass(x, s, o.hires, loras.prompt, o.negativePrompt, passes, cb, control);
    const t2 = performance.now();

    const decoded = await this.decodeLatents(x, s);
    const last = passes[passes.length - 1]!;
    cb.onStep?.({ step: last.steps, total: last.steps, timestep: 0, phase: 'decode', pass: last.pass });
    const t3 = performance.now();

    const parameters = a1111Parameters({
      ...s,
      prompt: loras.infotextPrompt,
      model: this.modelName,
      attentionLevels: attentionLevels(this.unet.config),
      latent: [lh, lw],
      passes,
      loraHashes: loras.hashes,
      // The hires fix encodes again after an image upscaler (anything but the latent ones).
      vaeEncoder: o.initImage || (s.hires && s.hires.upscaler !== 'latent' && s.hires.upscaler !== 'latent-nearest') ? s.vaeEncoder : undefined,
      controlNets: control.map(controlNetInfotext),
    });
    const rgb = toRgb(decoded).map((img) => (inpaint ? pasteOriginal(img, inpaint.original, inpaint.mask) : img));
    const images = rgb.map((img) => ({ ...img, seed: s.seed, parameters }));
    return { images, settings: { ...s, passes, controlnets: control.map(controlNetSettings) }, timings: { textMs: t1 - t0, denoiseMs: t2 - t1, decodeMs: t3 - t2 } };
  }

  /** ControlNets loaded by path, kept for the next generation (a model's session is released while no generation uses it). */
  private readonly controlNets = new Map<string, ControlNet>();

  /**
   * A ControlNet for this model: a diffusers folder or a `.safetensors` file (a single file's config
   * completed from this U-Net), loaded once per path with this pipeline's runtime, and checked to fit.
   */
  async loadControlNet(path: string): Promise<ControlNet> {
    const key = resolve(path);
    let cn = this.controlNets.get(key);
    if (!cn) {
      cn = await this.phase('load:controlnet', () => ControlNet.load(key, { ...this.unet.runtime, base: this.unet.config }));
      this.controlNets.set(key, cn);
    }
    checkControlNetFits(cn.name, cn.config, this.unet.config, this.vae.config.scale);
    return cn;
  }

  /** The generation's ControlNet units: loaded, checked against this model, their control maps made. */
  private async controlUnits(units: ControlNetUnit[] | undefined, s: GenerateSettings, source: { image?: RgbImage; mask?: Uint8Array }): Promise<ResolvedControlUnit[]> {
    if (units === undefined) return [];
    if (!Array.isArray(units)) fail('controlnets must be a list of units such as [{ model, image, scale }]');
    const out: ResolvedControlUnit[] = [];
    for (const [i, u] of units.entries()) {
      if (!u || typeof u !== 'object') fail(`controlnets[${i}] must be a unit such as { model, image, scale }`);
      let model: ControlNet;
      if (typeof u.model === 'string') model = await this.loadControlNet(u.model);
      else if (u.model instanceof ControlNet) model = u.model;
      else fail(`controlnets[${i}].model must be a ControlNet or the path of one`);
      checkControlNetFits(model.name, model.config, this.unet.config, this.vae.config.scale);
      out.push(resolveControlUnit(u, model, i, s, source));
    }
    const used = new Set(out.map((u) => u.model));
    for (const cn of this.controlNets.values()) if (!used.has(cn)) await cn.dispose();
    return out;
  }

  /** A pass's ControlNets at its size, for its `count` evaluations; undefined without any. */
  private controlPass(units: readonly ResolvedControlUnit[], s: GenerateSettings, size: { width: number; height: number }, count: number, attention: AttentionOptions, hires: boolean): ControlNetPass | undefined {
    if (units.length === 0) return undefined;
    return new ControlNetPass(units, size, s.batch, count, this.unet.config, attention, hires);
  }

  /**
   * The hires fix's second pass: upscale (latents, or decode → an image upscaler → encode), then
   * img2img at the target size with a fresh generator of the seed (A1111 draws the second pass's
   * noise anew from the seed).
   */
  private async hiresPass(
    x: Tensor,
    s: GenerateSettings,
    o: HiresOptions,
    prompt: string,
    negativePrompt: string | undefined,
    passes: PassInfo[],
    cb: GenerateCallbacks,
    control: readonly ResolvedControlUnit[],
  ): Promise<Tensor> {
    const hr = s.hires!;
    // SDXL's time ids carry the image size: the second pass encodes again.
    const cond = await this.passConditioning(s, prompt, negativePrompt, 2);
    const scale = this.vae.config.scale;
    const lh = hr.height / scale;
    const lw = hr.width / scale;
    const generator = new TorchGenerator(s.seed);
    const randn = (dims: readonly number[]): Float32Array => generator.randn(dims);
    const { scheduler, timesteps, noiseAt } = this.passSchedule(s, 2, randn);
    let init: Tensor;
    const u = o.upscaler;
    if (u === 'latent' || u === 'latent-nearest') {
      init = upscaleLatents(x, lh, lw, u === 'latent' ? 'bilinear' : 'nearest');
    } else {
      const images: RgbImage[] = [];
      for (const img of toRgb(await this.decodeLatents(x, s))) {
        // Lanczos is one resize to the size (A1111's steps for it come to the same thing).
        images.push(
          u === 'lanczos' ? fitImage(img, hr.width, hr.height) : await resizeWithUpscaler(img, hr.width, hr.height, u, {
            ...o.tile,
            signal: cb.signal,
            onTile: (done, total) => cb.onStep?.({ step: done, total, timestep: 0, phase: 'upscale', pass: 2 }),
          }),
        );
      }
      init = await this.encodeLatents(imagesToTensor(images), s, randn);
    }
    const start = noiseLatents(scheduler, init, noiseAt, randn);
    const out = await this.denoise({ x: start.latents, scheduler, timesteps, cond, cfg: s.cfg, ngms: ngmsOf(s), attention: hr.attention, deepcache: hr.deepcache, pass: 2, sessions: this.unetSessions(s), batchCondUncond: s.batchCondUncond, tiling: s.tiling, control: this.controlPass(control, s, hr, timesteps.length, hr.attention, true) }, cb);
    passes.push(this.passInfo(2, hr.width, hr.height, timesteps.length, hr.attention, s.tiling, { evaluations: out.evaluations, ...(hr.deepcache && { deepcache: hr.deepcache }) }));
    return out.latents;
  }

  private strengthRequest(s: GenerateSettings, steps: number, strength: number, hires: boolean): Parameters<typeof strengthRun>[1] {
    return { sampler: s.sampler, rule: s.strengthRule!, steps, strength, hires, numTrain: Number(this.schedulerConfig.num_train_timesteps ?? 1000) };
  }

  private async denoiseOnDevice(x: Tensor, s: GenerateSettings, fixed: Conditioning, cb: GenerateCallbacks): Promise<Tensor | null> {
    this.unet.setAttention(s.attention);
    const stopAt = s.attention.method === 'todo' ? (s.attention.stopAt ?? 1) : 1;
    return denoiseOnDevice({
      unet: this.unet,
      sampler: s.sampler,
      schedulerConfig: this.schedulerConfig,
      karras: s.karras,
      timestepSpacing: s.timestepSpacing,
      steps: s.steps,
      latents: x,
      conditioning: fixed,
      cfg: s.cfg,
      timestepCond: timestepCondition(s.cfg, this.unet.config, x.dims[0]!),
      stopAt,
      onStep: (step, n, timestep) => {
        cb.onStep?.({ step, total: n, timestep, phase: 'denoise', pass: 1 });
        if (cb.signal?.aborted) throw abortError('generation');
      },
    });
  }

  async dispose(): Promise<void> {
    await Promise.all([
      this.sdxl ? this.sdxl.dispose() : this.textEncoder.dispose(),
      this.unet.dispose(),
      this.vae.dispose(),
      this.tiny?.dispose(),
      ...[...this.controlNets.values()].map((cn) => cn.dispose()),
    ]);
  }
}

/** Decoded [B, 3, H, W] in [-1, 1] → 8-bit RGB images (diffusers' (x/2 + 0.5).clamp(0, 1) · 255, rounded). */
export function toRgb(t: Tensor): RgbImage[] {
  const [b, c, h, w] = t.dims as [number, number, number, number];
  return Array.from({ length: b }, (_, n) => {
    const data = new Uint8Array(h * w * 3);
    for (let ch = 0; ch < 3; ch++) {
      const plane = t.data.subarray((n * c + ch) * h * w, (n * c + ch + 1) * h * w);
      for (let p = 0; p < h * w; p++) data[p * 3 + ch] = Math.round(Math.min(1, Math.max(0, plane[p]! / 2 + 0.5)) * 255);
    }
    return { width: w, height: h, data };
  });
}

/** Initial latents from a safetensors (or PyTorch) file: the tensor named `latents`, or its only tensor. */
export function readLatentsFile(path: string): Tensor {
  const f = openWeightsFile(path);
  const names = [...f.tensors.keys()];
  const name = names.includes('latents') ? 'latents' : names.length === 1 ? names[0]! : fail(`${path}: expected a tensor named "latents" (found ${names.join(', ') || 'none'})`);
  return { data: f.readFloat32(name), dims: f.info(name).shape };
}
