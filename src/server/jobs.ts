/**
 * A job is one A1111 request (n_iter × batch_size images) in a JSON-safe form, so the same job
 * runs in this process or on a BullMQ worker on another machine.
 */
import type { AttentionOptions } from '../attention/options.js';
import type { StrengthRule } from '../pipeline/strength.js';
import type { ControlPreprocessor, ResizeMode } from '../pipeline/control-image.js';
import type { ControlMode } from '../pipeline/controlnet.js';
import type { PreviewMethod } from '../pipeline/preview.js';
import type { TilingOptions } from '../pipeline/multidiffusion.js';
import type { TimestepSpacing } from '../scheduler/config.js';
import type { SamplerName } from '../scheduler/index.js';
import type { DeepCacheOptions } from '../pipeline/deepcache.js';

/** An image on the wire: RGB bytes as base64. */
export interface WireImage {
  width: number;
  height: number;
  rgb: string;
}

export interface JobSpec {
  kind: 'txt2img' | 'img2img';
  /** A model name from the registry (never a path). */
  model: string;
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  cfg: number;
  sampler: SamplerName;
  karras: boolean;
  /** A1111's `scheduler` as a timestep spacing (SGM Uniform: trailing, Uniform: linspace). */
  timestepSpacing?: TimestepSpacing;
  /** TCD's γ. */
  eta?: number;
  clipSkip: number;
  attention: AttentionOptions;
  deepcache?: DeepCacheOptions;
  /** NGMS: A1111's s_min_uncond (0 = off) and s_min_uncond_all. */
  sMinUncond?: number;
  sMinUncondAll?: boolean;
  /** A1111's batch_cond_uncond (GenerateOptions.batchCondUncond); absent: true. */
  batchCondUncond?: boolean;
  /** Seed of each image, in order; A1111's seed + index, so each image's infotext reproduces it. */
  seeds: number[];
  /** Live previews in progress reports: the cheap approximation, TAESD (where the worker has one for the model), or none. */
  preview?: PreviewMethod | 'off';
  /** Contract fields of the pipeline (GenerateOptions): img2img, inpainting, hires fix. */
  initImage?: WireImage;
  strength?: number;
  mask?: { image: WireImage; blur: number; invert: boolean; fill: 'original' | 'fill' | 'latent-noise' | 'latent-nothing' };
  /** `upscaler`: one of HIRES_UPSCALERS, or an upscaler model's name in the registry. */
  hires?: { scale: number; steps?: number; denoise: number; upscaler: string; deepcache?: DeepCacheOptions | false };
  /** Tiled Diffusion (MultiDiffusion). */
  tiling?: TilingOptions;
  /** SD upscale of initImage; width and height are its tiles'; `upscaler`: A1111's name of a built-in one or a registry model. */
  sdUpscale?: { scale: number; overlap: number; upscaler: string; batchSize: number };
  /**
   * Tiled Diffusion's img2img upscale: the runner enlarges initImage by `scale` with `upscaler`
   * (A1111's name of a built-in one or a registry model), then fits it to width x height with A1111's resize mode.
   */
  initUpscale?: { upscaler: string; scale: number; resizeMode: number };
  strengthRule?: StrengthRule;
  /** ControlNet units (A1111's `alwayson_scripts.controlnet.args`), each model a registry name. */
  controlnets?: WireControlUnit[];
}

/** A ControlNet unit on the wire: the pipeline's ControlNetUnit with a model name and wire images. */
export interface WireControlUnit {
  model: string;
  /** Absent: the init image (img2img). */
  image?: WireImage;
  mask?: WireImage;
  preprocessor: ControlPreprocessor;
  processorRes?: number;
  thresholdA?: number;
  thresholdB?: number;
  pixelPerfect: boolean;
  scale: number;
  start: number;
  end: number;
  controlMode: ControlMode;
  resizeMode: ResizeMode;
}

/** A1111's Extras upscaling of some images (extra-single-image, extra-batch-images). */
export interface ExtrasJob {
  kind: 'extras';
  images: WireImage[];
  /** Scale by `by`, or to width × height (A1111's resize_mode 0 / 1), cropping with `crop`. */
  mode: 'by' | 'to';
  by: number;
  width: number;
  height: number;
  crop: boolean;
  /** Upscaler names as A1111 lists them: None, Lanczos, Nearest, or a model in the registry. */
  upscaler: string;
  upscaler2: string;
  upscaler2Visibility: number;
}

/** What the queue runs. */
export type QueueJob = JobSpec | ExtrasJob;

export interface JobImage {
  /** PNG with its `parameters` chunk, base64. */
  png: string;
  seed: number;
  parameters: string;
}

/** The mean time of a pass's denoising steps (those not slowed by a graph or session being made). */
export interface PassTiming {
  pass: number;
  width: number;
  height: number;
  stepMs: number;
  /** Steps the mean is over. */
  steps: number;
}

export interface JobResult {
  images: JobImage[];
  /** True when `interrupt` stopped the job: images holds the ones finished before. */
  interrupted: boolean;
  timing: PassTiming[];
}

export interface JobProgress {
  /** Images finished and the image in progress (0-based). */
  image: number;
  images: number;
  step: number;
  steps: number;
  /** The latest live preview of the image in progress (PNG, base64), when the pipeline reports latents. */
  preview?: string;
  /** `interrupt` reached the job / `skip` reached the image in progress. */
  interrupted?: boolean;
  skipped?: boolean;
  /** The slow phase in progress (`load:unet`, `session:unet`, …; see runtime/progress.ts) and when it started (ms since the epoch). */
  phase?: { name: string; since: number };
}

/** A1111's state flags: those of the running job, else of the last one (kept until the next starts, as A1111 does). */
export interface StopFlags {
  interrupted: boolean;
  skipped: boolean;
}

/** Where jobs wait and run: in this process, or on Redis workers. */
export interface JobQueue {
  /** Runs a job when its turn comes; resolves with its result. */
  run(job: QueueJob): Promise<JobResult>;
  /** Progress of the running jobs (oldest first) and how many wait. */
  status(): Promise<{ running: { id: string; startedAt: number; progress?: JobProgress }[]; waiting: number; flags: StopFlags }>;
  /** Stops every running job after its current step; the finished images are returned. */
  interrupt(): Promise<void>;
  /** Skips the image in progress of every running job. */
  skip(): Promise<void>;
  close(): Promise<void>;
}
