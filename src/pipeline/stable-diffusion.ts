/**
 * Text-to-image for SD 1.x / 2.x / XL: tokenize → encode the prompts (negative and positive
 * halves in one batch for classifier-free guidance) → denoise with a scheduler → VAE decode →
 * RGB images. SDXL's two-encoder conditioning lives in conditioning-sdxl.ts.
 */
import { basename, resolve } from 'node:path';
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { todoActiveAt } from '../attention/todo.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import { attentionLevels, UNet } from '../models/unet.js';
import { VAE } from '../models/vae.js';
import { TorchGenerator } from '../random/torch-randn.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { createScheduler, type SamplerName } from '../scheduler/index.js';
import { resolveSampler } from '../scheduler/names.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';
import { numel, type Tensor } from '../tensor.js';
import type { RgbImage } from '../io/png.js';
import { PROMPT_SYNTAXES, PromptConditioning, usesPromptSyntax, type PromptSyntax } from '../prompt/index.js';
import type { SdxlConditioner } from './conditioning-sdxl.js';
import { detectModelFamily, type ModelFamily } from './model-family.js';
import { modelSdxlConditioner, modelTokenizer, modelVAE, schedulerConfig, type ModelSourceOptions } from './model-parts.js';
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
  phase: 'denoise' | 'decode';
  /** The current latents (denoise phase), for previews. */
  latents?: Tensor;
}

export interface GenerateCallbacks {
  onStep?: (info: StepInfo) => void;
  onWarning?: (message: string) => void;
}

export interface GeneratedImage extends RgbImage {
  seed: number;
  /** The generation parameters in AUTOMATIC1111's text format. */
  parameters: string;
}

export interface GenerateResult {
  images: GeneratedImage[];
  /** The settings actually used, defaults filled in. */
  settings: Required<Omit<GenerateOptions, 'latents' | 'negativePrompt' | 'loras' | 'loraDir' | 'sampler'>> & {
    sampler: SamplerName;
    negativePrompt: string;
    latentsFromFile: boolean;
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

export class StableDiffusion {
  private constructor(
    readonly modelDir: string,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: ClipTextEncoder,
    readonly unet: UNet,
    readonly vae: VAE,
    readonly schedulerConfig: Record<string, unknown>,
    private readonly loras: PipelineLoras,
    /** SDXL's two tokenizers and text encoders (the first ones are also `tokenizer`, `textEncoder`). */
    readonly sdxl?: SdxlConditioner,
  ) {}

  /** `model`: a diffusers folder or a single-file checkpoint (.safetensors, LDM / SGM layout). */
  static async load(model: string, options: RuntimeOptions & ModelSourceOptions & { attention?: AttentionOptions; loras?: LoraSpec[] } = {}): Promise<StableDiffusion> {
    const { loras, ...opts } = options;
    const modelDir = resolve(model);
    const scheduler = schedulerConfig(modelDir, opts);
    const [unet, vae] = await Promise.all([UNet.load(modelDir, opts), modelVAE(modelDir, opts)]);
    if (vae.config.latentChannels !== unet.config.outChannels) {
      fail(`the VAE has ${vae.config.latentChannels} latent channels but the U-Net works on ${unet.config.outChannels}: the VAE belongs to another model family`);
    }
    if (detectModelFamily(modelDir, unet.config) === 'sdxl') {
      const sdxl = await modelSdxlConditioner(modelDir, unet.config, opts);
      const sdxlLoras = new PipelineLoras([...sdxl.textEncoders, unet], loras ?? []);
      sdxlLoras.useBase(opts.onWarning);
      return new StableDiffusion(modelDir, sdxl.tokenizers[0], sdxl.textEncoders[0], unet, vae, scheduler, sdxlLoras, sdxl);
    }
    const [tokenizer, textEncoder] = await Promise.all([modelTokenizer(modelDir, { onWarning: opts.onWarning }), ClipTextEncoder.load(modelDir, opts)]);
    if (textEncoder.config.hiddenSize !== unet.config.crossAttentionDim) {
      fail(`text encoder width ${textEncoder.config.hiddenSize} does not match the U-Net's cross_attention_dim ${unet.config.crossAttentionDim}; the components come from different models`);
    }
    const pipeLoras = new PipelineLoras([textEncoder, unet], loras ?? []);
    pipeLoras.useBase(opts.onWarning);
    return new StableDiffusion(modelDir, tokenizer, textEncoder, unet, vae, scheduler, pipeLoras);
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
    const sampleSize = Number((this.unet.rawConfig.sample_size as number | undefined) ?? 64);
    return sampleSize * this.vae.config.scale;
  }

  private resolve(o: GenerateOptions): Omit<GenerateResult['settings'], 'loras'> {
    if (typeof o.prompt !== 'string') fail('prompt must be a string');
    const scale = this.vae.config.scale;
    const width = o.width ?? this.nativeSize;
    const height = o.height ?? this.nativeSize;
    for (const [name, v] of [
      ['width', width],
      ['height', height],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0 || v % 8 !== 0 || v % scale !== 0) {
        fail(`${name} must be a positive multiple of ${Math.max(8, scale)}; got ${v} (try ${Math.max(8, Math.round(v / 8) * 8) || 8})`);
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
    const attention = resolveAttention(o.attention ?? this.unet.attention.options).options;
    const clipSkip = o.clipSkip ?? 1;
    const vaeTiling = o.vaeTiling ?? 'auto';
    const promptSyntax = o.promptSyntax ?? 'a1111';
    if (!PROMPT_SYNTAXES.includes(promptSyntax)) fail(`promptSyntax must be one of ${PROMPT_SYNTAXES.join(', ')}; got "${String(promptSyntax)}"`);
    return {
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
  }

  async generate(o: GenerateOptions, cb: GenerateCallbacks = {}): Promise<GenerateResult> {
    const resolved = this.resolve(o);
    const loras = this.loras.forGeneration(resolved.prompt, o.loras, o.loraDir, cb.onWarning);
    const s = { ...resolved, loras: loras.used };
    const scale = this.vae.config.scale;
    const lh = s.height / scale;
    const lw = s.width / scale;
    const latentDims = [s.batch, this.unet.config.inChannels, lh, lw];
    const generator = new TorchGenerator(s.seed);
    const scheduler = createScheduler(s.sampler, this.schedulerConfig, { karras: s.karras, randn: (dims) => generator.randn(dims) });
    scheduler.setTimesteps(s.steps);

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
    let x: Tensor = { data: noise.map((v) => v * scheduler.initNoiseSigma), dims: latentDims };

    const t0 = performance.now();
    const guided = s.cfg > 1;
    // SDXL: diffusers' two-encoder conditioning; A1111's prompt syntax is wired for SD 1.x/2.x.
    if (this.sdxl && s.promptSyntax === 'a1111' && [s.prompt, s.negativePrompt].some(usesPromptSyntax)) {
      cb.onWarning?.('SDXL prompts are read as plain text for now (no emphasis, BREAK or prompt editing; cut at 75 tokens)');
    }
    const sdxlCond = this.sdxl
      ? await this.sdxl.encode({ prompt: loras.prompt, negativePrompt: o.negativePrompt, batch: s.batch, guided, clipSkip: s.clipSkip, width: s.width, height: s.height })
      : undefined;
    const request = { prompt: loras.prompt, negativePrompt: s.negativePrompt, steps: s.steps, batch: s.batch, guided, syntax: s.promptSyntax };
    const conditioning = sdxlCond ? undefined : await PromptConditioning.build(request, this.tokenizer, (ids) => this.textEncoder.forward(ids, { clipSkip: s.clipSkip }));
    const t1 = performance.now();

    this.unet.setAttention(s.attention);
    const stopAt = s.attention.method === 'todo' ? (s.attention.stopAt ?? 1) : 1;
    // Heun (order 2) evaluates the U-Net 2·steps − 1 times; steps are counted as diffusers counts them.
    const evaluations = scheduler.timesteps.length;
    const total = s.steps;
    // The device loop takes one conditioning for every step; prompt editing runs the loop below.
    const fixedCond = sdxlCond ?? (conditioning && !conditioning.scheduled ? { encoderHiddenStates: conditioning.at(0) } : undefined);
    const onDevice =
      deviceLoopWanted(this.unet) && fixedCond
        ? await denoiseOnDevice({ unet: this.unet, sampler: s.sampler, schedulerConfig: this.schedulerConfig, karras: s.karras, steps: s.steps, latents: x, conditioning: fixedCond, cfg: s.cfg, stopAt, onStep: (step, n, timestep) => cb.onStep?.({ step, total: n, timestep, phase: 'denoise' }) })
        : null;
    if (onDevice) x = onDevice;
    else for (const [i, t] of scheduler.timesteps.entries()) {
      const scaled = scheduler.scaleModelInput(x, t);
      const input = guided ? { data: concat(scaled.data, scaled.data), dims: [2 * s.batch, ...latentDims.slice(1)] } : scaled;
      const step = Math.ceil(i / scheduler.order);
      const text = conditioning?.at(step) ?? sdxlCond!.encoderHiddenStates;
      const out = await this.unet.forward(input, t, text, { attentionActive: todoActiveAt(stopAt, step, total), ...sdxlCond?.added });
      let eps = out;
      if (guided) {
        const n = numel(latentDims);
        const uncond = out.data.subarray(0, n);
        const cond = out.data.subarray(n);
        eps = { data: uncond.map((u, k) => u + s.cfg * (cond[k]! - u)), dims: latentDims };
      }
      x = scheduler.step(eps, t, x);
      if ((i + 1) % scheduler.order === 0 || i === evaluations - 1) cb.onStep?.({ step: Math.ceil((i + 1) / scheduler.order), total, timestep: t, phase: 'denoise', latents: x });
    }
    const t2 = performance.now();

    const z = { data: x.data.map((v) => v / this.vae.config.scalingFactor), dims: latentDims };
    const tiled = s.vaeTiling === true || (s.vaeTiling === 'auto' && s.width * s.height > 1024 * 1024);
    const tile = Math.max(16, Math.round(512 / scale));
    const decoded = tiled ? await decodeTiled(z, scale, (t) => this.vae.decode(t), { tile, overlap: Math.round(tile / 4) }) : await this.vae.decode(z);
    cb.onStep?.({ step: total, total, timestep: 0, phase: 'decode' });
    const t3 = performance.now();

    const parameters = a1111Parameters({
      ...s,
      prompt: loras.infotextPrompt,
      model: this.modelName,
      attentionLevels: attentionLevels(this.unet.config),
      latent: [lh, lw],
      loraHashes: loras.hashes,
    });
    const images = toRgb(decoded).map((img) => ({ ...img, seed: s.seed, parameters }));
    return { images, settings: s, timings: { textMs: t1 - t0, denoiseMs: t2 - t1, decodeMs: t3 - t2 } };
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
