/**
/**
 * Stable Diffusion 1.x / 2.x / XL: tokenize → encode the prompts (negative and positive halves in
 * one batch for classifier-free guidance; SDXL's two-encoder conditioning lives in
 * conditioning-sdxl.ts) → start from noise, or from an init image (img2img.ts), with an optional
 * inpainting mask (inpaint.ts) → denoise with a scheduler → optionally a hires-fix second pass
 * (hires.ts) → VAE decode → RGB images.
 */
import { basename, resolve } from 'node:path';
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { autoTodoFactor, todoActiveAt } from '../attention/todo.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import { attentionLevels, UNet } from '../models/unet.js';
import { VAE } from '../models/vae.js';
import { TorchGenerator } from '../random/torch-randn.js';
import { phase, ProgressRelay, type ProgressListener } from '../runtime/progress.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { createScheduler, type SamplerName, type Scheduler } from '../scheduler/index.js';
import { resolveSampler } from '../scheduler/names.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';
import { numel, type IntTensor, type Tensor } from '../tensor.js';
import type { RgbImage } from '../io/png.js';
import { PROMPT_SYNTAXES, PromptConditioning, type PromptSyntax } from '../prompt/index.js';
import type { Conditioning, SdxlConditioner } from './conditioning-sdxl.js';
import { detectModelFamily, type ModelFamily } from './model-family.js';
import { modelSdxlConditioner, modelTokenizer, modelVAE, nativeImageSize, schedulerConfig, type ModelSourceOptions } from './model-parts.js';
import { HIRES_UPSCALERS, hiresSize, upscaleLatents, type HiresOptions, type HiresUpscaler } from './hires.js';
import { checkRgbImage, encodeImage, fitImage, img2imgTimesteps, imagesToTensor, noiseLatents } from './img2img.js';
import { blendLatents, fillMasked, INPAINT_FILLS, pasteOriginal, prepareMask, type InpaintFill, type InpaintMask } from './inpaint.js';
import { a1111Parameters } from './parameters.js';
import { decodeTiled } from './vae-tiling.js';
import type { LoraSpec } from '../lora/merge.js';
import { PipelineLoras, type UsedLora } from '../lora/pipeline-loras.js';
import { denoiseOnDevice, deviceLoopWanted } from './device-loop.js';

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
  /** Initial noise [batch, 4, height/8, width/8] instead of the seed's (scaled by the scheduler's init sigma, as diffusers does). */
  latents?: Tensor;
  attention?: AttentionOptions;
  /** 1 = last CLIP layer (default), 2 = the one before, … (AUTOMATIC1111's convention). */
  clipSkip?: number;
  /** Tiled VAE decoding: 'auto' (default) tiles above 1024x1024 pixels. */
  vaeTiling?: boolean | 'auto';
  /**
   * Image-to-image: the starting picture. Resized with Lanczos to width x height when those are
   * given and differ; without them the size is the image's, rounded down to a multiple of 8.
   */
  initImage?: RgbImage;
  /** How far the init image is noised, 0 < strength ≤ 1 (default 0.75): the share of the steps that run. */
  strength?: number;
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
}

export interface StepInfo {
  step: number;
  total: number;
  timestep: number;
  /** 'hires' for the steps of the hires fix's second pass. */
  phase: 'denoise' | 'decode' | 'hires';
  /** The latents after this step (for previews). */
  latents?: Tensor;
  /** 1, or 2 in the hires fix's second pass. */
  pass?: 1 | 2;
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
  /** The attention as used: ToDo's 'auto' factor resolved for this size. */
  attention: AttentionOptions;
}

/** The settings actually used, defaults filled in. */
export type GenerateSettings = Required<Omit<GenerateOptions, 'latents' | 'negativePrompt' | 'initImage' | 'strength' | 'mask' | 'hires' | 'loras' | 'loraDir' | 'sampler'>> & {
  sampler: SamplerName;
  negativePrompt: string;
  latentsFromFile: boolean;
  initImage?: { width: number; height: number };
  strength?: number;
  mask?: { blur: number; invert: boolean; fill: InpaintFill };
  hires?: { scale: number; steps: number; denoise: number; upscaler: HiresUpscaler; attention: AttentionOptions; width: number; height: number };
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
};

function fail(msg: string): never {
  throw new Error(msg);
}

function abortError(): Error {
  const e = new Error('generation aborted');
  e.name = 'AbortError';
  return e;
}


/** A pass's text conditioning (SDXL's added inputs included), per sampling step for prompt editing. */
interface PassConditioning {
  at(step: number): Conditioning;
  /** The same conditioning at every step, when it is (the device loop needs that). */
  fixed?: Conditioning;
}

interface DenoiseRun {
  x: Tensor;
  scheduler: Scheduler;
  timesteps: readonly number[];
  cond: PassConditioning;
  cfg: number;
  attention: AttentionOptions;
  pass: 1 | 2;
  /** Inpainting: resets the unmasked latents after a step, given the next timestep (undefined after the last). */
  blend?: (x: Tensor, next: number | undefined) => Tensor;
}

export class StableDiffusion {
  private constructor(
    readonly modelDir: string,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: ClipTextEncoder,
    readonly unet: UNet,
    readonly vae: VAE,
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

  /**
   * `model`: a diffusers folder or a single-file checkpoint (.safetensors, LDM / SGM layout).
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
      return new StableDiffusion(modelDir, sdxl.tokenizers[0], sdxl.textEncoders[0], unet, vae, scheduler, sdxlLoras, progress, sdxl);
    }
    const tokenizer = await part('tokenizer', () => modelTokenizer(modelDir, { onWarning: opts.onWarning }));
    const textEncoder = await part('text_encoder', () => ClipTextEncoder.load(modelDir, opts));
    if (textEncoder.config.hiddenSize !== unet.config.crossAttentionDim) {
      fail(`text encoder width ${textEncoder.config.hiddenSize} does not match the U-Net's cross_attention_dim ${unet.config.crossAttentionDim}; the components come from different models`);
    }
    const pipeLoras = new PipelineLoras([textEncoder, unet], loras ?? []);
    pipeLoras.useBase(opts.onWarning);
    return new StableDiffusion(modelDir, tokenizer, textEncoder, unet, vae, scheduler, pipeLoras, progress);
  }

  get family(): ModelFamily {
    return this.sdxl ? 'sdxl' : 'sd';
  }

  /** The folder's or checkpoint file's name, without `.safetensors` (as A1111 names checkpoints). */
  get modelName(): string {
    return basename(this.modelDir).replace(/\.safetensors$/i, '');
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
      promptSyntax,
      latentsFromFile: o.latents !== undefined,
    };
    if (init) {
      if (o.latents) fail('initial latents and an init image exclude each other: img2img draws its noise from the seed');
      const strength = o.strength ?? 0.75;
      if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) fail(`strength must be a number in (0, 1] (1 repaints everything); got ${strength}`);
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
      if (typeof h.denoise !== 'number' || !(h.denoise > 0 && h.denoise <= 1)) fail(`hires denoise must be a number in (0, 1]; got ${h.denoise}`);
      if (!HIRES_UPSCALERS.includes(h.upscaler)) fail(`unknown hires upscaler "${String(h.upscaler)}"; use one of ${HIRES_UPSCALERS.join(', ')}`);
      const hAttention = h.attention ? resolveAttention(h.attention).options : attention;
      settings.hires = { scale: h.scale, steps: hSteps, denoise: h.denoise, upscaler: h.upscaler, attention: hAttention, ...size };
    }
    return settings;
  }

  /**
   * The text conditioning of one pass: A1111's prompt syntax per step (or plain), for SDXL
   * through both encoders, with the pooled vector and time ids (this pass's size). SDXL's plain
   * syntax is diffusers' own path.
   */
  private async passConditioning(s: GenerateSettings, prompt: string, negativePrompt: string | undefined, size: { width: number; height: number; steps: number; firstPassSteps?: number }): Promise<PassConditioning> {
    const guided = s.cfg > 1;
    const sdxl = this.sdxl;
    if (sdxl && s.promptSyntax === 'plain') {
      const c = await sdxl.encode({ prompt, negativePrompt, batch: s.batch, guided, clipSkip: s.clipSkip, width: size.width, height: size.height });
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
    const timeIds = sdxl?.timeIds(c.at(0).dims[0]!, size.width, size.height);
    const at = (step: number): Conditioning => ({ encoderHiddenStates: c.at(step), ...(timeIds ? { added: { textEmbeds: c.pooledAt(step)!, timeIds } } : {}) });
    return { at, fixed: c.scheduled ? undefined : at(0) };
  }

  /** One denoising pass: guidance, the scheduler's steps, the inpainting blend, callbacks and abort. */
  private async denoise(run: DenoiseRun, cb: GenerateCallbacks): Promise<Tensor> {
    const { scheduler, timesteps, cond, cfg } = run;
    let x = run.x;
    const dims = x.dims;
    const batch = dims[0]!;
    const guided = cfg > 1;
    this.unet.setAttention(run.attention);
    const stopAt = run.attention.method === 'todo' ? (run.attention.stopAt ?? 1) : 1;
    // Heun (order 2) evaluates the U-Net twice per step; steps are counted as diffusers counts them.
    const total = Math.ceil(timesteps.length / scheduler.order);
    const phase = run.pass === 2 ? 'hires' : 'denoise';
    for (const [i, t] of timesteps.entries()) {
      const scaled = scheduler.scaleModelInput(x, t);
      const input = guided ? { data: concat(scaled.data, scaled.data), dims: [2 * batch, ...dims.slice(1)] } : scaled;
      const step = Math.floor(i / scheduler.order);
      const c = cond.at(step);
      const out = await this.unet.forward(input, t, c.encoderHiddenStates, { attentionActive: todoActiveAt(stopAt, step, total), ...c.added });
      let eps = out;
      if (guided) {
        const n = numel(dims);
        const uncond = out.data.subarray(0, n);
        const cond = out.data.subarray(n);
        eps = { data: uncond.map((u, k) => u + cfg * (cond[k]! - u)), dims };
      }
      x = scheduler.step(eps, t, x);
      if (run.blend) x = run.blend(x, timesteps[i + 1]);
      if ((i + 1) % scheduler.order === 0 || i === timesteps.length - 1) {
        cb.onStep?.({ step: Math.ceil((i + 1) / scheduler.order), total, timestep: t, phase, latents: x, pass: run.pass });
      }
      if (cb.signal?.aborted) throw abortError();
    }
    return x;
  }

  /** The attention options as a pass of this latent size runs them: ToDo's 'auto' resolved on the first attention level's grid. */
  private attentionUsed(a: AttentionOptions, latent: readonly [number, number]): AttentionOptions {
    if (a.method !== 'todo' || a.factor !== 'auto') return a;
    let [h, w] = latent;
    for (let i = 0; i < (attentionLevels(this.unet.config)[0] ?? 0); i++) [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
    return { ...a, factor: autoTodoFactor([h, w]) };
  }

  private phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return phase(this.progress.emit, name, fn);
  }

  /** Latents → image [B, 3, H, W] in [-1, 1], tiled when asked or (auto) above 1024x1024. */
  private decodeLatents(x: Tensor, tiling: boolean | 'auto'): Promise<Tensor> {
    return this.phase('decode:vae', () => this.decodeWithVae(x, tiling));
  }

  private async decodeWithVae(x: Tensor, tiling: boolean | 'auto'): Promise<Tensor> {
    const scale = this.vae.config.scale;
    const z = { data: x.data.map((v) => v / this.vae.config.scalingFactor), dims: x.dims };
    const [, , h, w] = x.dims as [number, number, number, number];
    const tiled = tiling === true || (tiling === 'auto' && h * w * scale * scale > 1024 * 1024);
    const tile = Math.max(16, Math.round(512 / scale));
    return tiled ? decodeTiled(z, scale, (t) => this.vae.decode(t), { tile, overlap: Math.round(tile / 4) }) : this.vae.decode(z);
  }

  async generate(o: GenerateOptions, cb: GenerateCallbacks = {}): Promise<GenerateResult> {
    return this.progress.during(cb.onProgress, () => this.run(o, cb));
  }

  private async run(o: GenerateOptions, cb: GenerateCallbacks): Promise<GenerateResult> {
    const resolved = this.resolve(o);
    if (cb.signal?.aborted) throw abortError();
    const loras = this.loras.forGeneration(resolved.prompt, o.loras, o.loraDir, cb.onWarning);
    const s = { ...resolved, loras: loras.used };
    const scale = this.vae.config.scale;
    const lh = s.height / scale;
    const lw = s.width / scale;
    const latentDims = [s.batch, this.unet.config.inChannels, lh, lw];
    const generator = new TorchGenerator(s.seed);
    const randn = (dims: readonly number[]): Float32Array => generator.randn(dims);
    const scheduler = createScheduler(s.sampler, this.schedulerConfig, { karras: s.karras, randn });
    scheduler.setTimesteps(s.steps);

    const t0 = performance.now();
    const cond = await this.phase('encode:prompt', () => this.passConditioning(s, loras.prompt, o.negativePrompt, { width: s.width, height: s.height, steps: s.steps }));
    const t1 = performance.now();

    let x: Tensor;
    let timesteps: readonly number[] = scheduler.timesteps;
    let blend: DenoiseRun['blend'];
    let inpaint: { original: RgbImage; mask: Uint8Array } | undefined;
    if (o.initImage) {
      const original = fitImage(o.initImage, s.width, s.height);
      const mask = o.mask && prepareMask(o.mask, s.width, s.height, lw, lh);
      const source = mask && s.mask?.fill === 'fill' ? fillMasked(original, mask.pixels) : original;
      timesteps = img2imgTimesteps(scheduler, s.steps, s.strength!);
      let init = (await this.phase('encode:vae', () => encodeImage(this.vae, imagesToTensor([source]), randn, s.batch))).latents;
      if (mask && (s.mask?.fill === 'latent-noise' || s.mask?.fill === 'latent-nothing')) {
        // A1111 draws this noise from a fresh generator of the seed.
        const inside = s.mask.fill === 'latent-noise' ? new TorchGenerator(s.seed).randn(init.dims) : new Float32Array(init.data.length);
        init = blendLatents({ data: inside, dims: init.dims }, init, mask.latent);
      }
      const start = noiseLatents(scheduler, init, timesteps, randn);
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

    // The device loop keeps plain text-to-image on the GPU; img2img, inpainting and prompt editing run here.
    const onDevice =
      !o.initImage && cond.fixed && deviceLoopWanted(this.unet)
        ? await this.denoiseOnDevice(x, s, cond.fixed, cb)
        : null;
    x = onDevice ?? (await this.denoise({ x, scheduler, timesteps, cond, cfg: s.cfg, attention: s.attention, pass: 1, blend }, cb));
    const passes: PassInfo[] = [{ pass: 1, width: s.width, height: s.height, steps: timesteps.length, attention: this.attentionUsed(s.attention, [lh, lw]) }];
    if (s.hires) x = await this.hiresPass(x, s, loras.prompt, o.negativePrompt, passes, cb);
    const t2 = performance.now();

    const decoded = await this.decodeLatents(x, s.vaeTiling);
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
    });
    const rgb = toRgb(decoded).map((img) => (inpaint ? pasteOriginal(img, inpaint.original, inpaint.mask) : img));
    const images = rgb.map((img) => ({ ...img, seed: s.seed, parameters }));
    return { images, settings: { ...s, passes }, timings: { textMs: t1 - t0, denoiseMs: t2 - t1, decodeMs: t3 - t2 } };
  }

  /**
   * The hires fix's second pass: upscale (latents, or decode → Lanczos → encode), then img2img at
   * the target size with a fresh generator of the seed (A1111 draws the second pass's noise anew
   * from the seed).
   */
  private async hiresPass(x: Tensor, s: GenerateSettings, prompt: string, negativePrompt: string | undefined, passes: PassInfo[], cb: GenerateCallbacks): Promise<Tensor> {
    const hr = s.hires!;
    // SDXL's time ids carry the image size; prompt editing counts on from the first pass's steps (A1111).
    const cond = await this.phase('encode:prompt', () => this.passConditioning(s, prompt, negativePrompt, { width: hr.width, height: hr.height, steps: hr.steps, firstPassSteps: s.steps }));
    const scale = this.vae.config.scale;
    const lh = hr.height / scale;
    const lw = hr.width / scale;
    const generator = new TorchGenerator(s.seed);
    const randn = (dims: readonly number[]): Float32Array => generator.randn(dims);
    const scheduler = createScheduler(s.sampler, this.schedulerConfig, { karras: s.karras, randn });
    scheduler.setTimesteps(hr.steps);
    const timesteps = img2imgTimesteps(scheduler, hr.steps, hr.denoise);
    let init: Tensor;
    if (hr.upscaler === 'lanczos') {
      const images = toRgb(await this.decodeLatents(x, s.vaeTiling)).map((img) => fitImage(img, hr.width, hr.height));
      init = (await this.phase('encode:vae', () => encodeImage(this.vae, imagesToTensor(images), randn, s.batch))).latents;
    } else {
      init = upscaleLatents(x, lh, lw, hr.upscaler === 'latent' ? 'bilinear' : 'nearest');
    }
    const start = noiseLatents(scheduler, init, timesteps, randn);
    const out = await this.denoise({ x: start.latents, scheduler, timesteps, cond, cfg: s.cfg, attention: hr.attention, pass: 2 }, cb);
    passes.push({ pass: 2, width: hr.width, height: hr.height, steps: timesteps.length, attention: this.attentionUsed(hr.attention, [lh, lw]) });
    return out;
  }

  private async denoiseOnDevice(x: Tensor, s: GenerateSettings, fixed: Conditioning, cb: GenerateCallbacks): Promise<Tensor | null> {
    this.unet.setAttention(s.attention);
    const stopAt = s.attention.method === 'todo' ? (s.attention.stopAt ?? 1) : 1;
    return denoiseOnDevice({
      unet: this.unet,
      sampler: s.sampler,
      schedulerConfig: this.schedulerConfig,
      karras: s.karras,
      steps: s.steps,
      latents: x,
      conditioning: fixed,
      cfg: s.cfg,
      stopAt,
      onStep: (step, n, timestep) => {
        cb.onStep?.({ step, total: n, timestep, phase: 'denoise', pass: 1 });
        if (cb.signal?.aborted) throw abortError();
      },
    });
  }

  async dispose(): Promise<void> {
    await Promise.all([this.sdxl ? this.sdxl.dispose() : this.textEncoder.dispose(), this.unet.dispose(), this.vae.dispose()]);
  }
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
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

/** Initial latents from a safetensors file: the tensor named `latents`, or its only tensor. */
export function readLatentsFile(path: string): Tensor {
  const f = SafetensorsFile.open(path);
  const names = [...f.tensors.keys()];
  const name = names.includes('latents') ? 'latents' : names.length === 1 ? names[0]! : fail(`${path}: expected a tensor named "latents" (found ${names.join(', ') || 'none'})`);
  return { data: f.readFloat32(name), dims: f.info(name).shape };
}
