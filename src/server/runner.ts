/**
 * Runs jobs on a pipeline: loads the job's model (one at a time, kept for the next job), draws
 * each image with its own seed, reports progress (the slow phase in progress, then steps with a
 * live preview: the cheap latent approximation, or TAESD where the job asks for it and one fits
 * the model), times its steps, and honours interrupt (stop after the current step, keep the
 * finished images) and skip (drop the current image). Extras jobs upscale images; upscaler
 * models are loaded by name, the last one kept.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { encodePng, type RgbImage } from '../io/png.js';
import type { TinyVAE } from '../models/taesd.js';
import { Upscaler } from '../models/upscaler/upscaler.js';
import { extrasInfotext, upscaleExtras } from '../pipeline/extras.js';
import { HIRES_UPSCALERS, type HiresUpscaler } from '../pipeline/hires.js';
import { modelTinyVAE } from '../pipeline/model-parts.js';
import { LivePreview } from '../pipeline/preview.js';
import { StableDiffusion, type GenerateOptions, type StepInfo } from '../pipeline/stable-diffusion.js';
import { builtinUpscaler, upscaleBy, type BuiltinUpscaler } from '../pipeline/upscale-image.js';
import { phase, type PhaseEvent } from '../runtime/progress.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { ExtrasJob, JobProgress, JobResult, JobSpec, QueueJob, WireImage } from './jobs.js';
import type { ModelRegistry } from './models.js';
import { fitImage } from './resize-mode.js';
import { StepClock } from './step-rates.js';

/** GenerateOptions with the fields other branches add under the contracts' names. */
type PipelineOptions = GenerateOptions & {
  initImage?: RgbImage;
  strength?: number;
  mask?: { image: RgbImage; blur?: number; invert?: boolean; fill?: 'original' | 'fill' | 'latent-noise' | 'latent-nothing' };
  loraDir?: string;
};

/**
 * Interrupt and skip requests for one running job. The flags live in shared memory, so a job
 * running on a worker thread (runner-thread.ts) sees a request at its next step although its
 * thread is busy in onnxruntime and takes no messages.
 */
export class JobControl {
  constructor(readonly flags: Int32Array = new Int32Array(new SharedArrayBuffer(8))) {}

  get interrupted(): boolean {
    return Atomics.load(this.flags, 0) === 1;
  }

  get skipped(): boolean {
    return Atomics.load(this.flags, 1) === 1;
  }

  set skipped(v: boolean) {
    Atomics.store(this.flags, 1, v ? 1 : 0);
  }

  /** Called when a request arrives, so that progress says so before the next step. */
  onChange: () => void = () => {};
  interrupt(): void {
    Atomics.store(this.flags, 0, 1);
    this.onChange();
  }
  skip(): void {
    this.skipped = true;
    this.onChange();
  }
}

/** What runs a queue's jobs: a JobRunner here, or one on a worker thread. */
export interface Runner {
  run(job: QueueJob, control: JobControl, onProgress?: (p: JobProgress) => void): Promise<JobResult>;
  dispose(): Promise<void>;
}

class Stopped extends Error {}

const fromWire = (w: WireImage): RgbImage => ({ width: w.width, height: w.height, data: new Uint8Array(Buffer.from(w.rgb, 'base64')) });

export function toWire(img: RgbImage): WireImage {
  return { width: img.width, height: img.height, rgb: Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength).toString('base64') };
}

export interface RunnerOptions {
  /**
   * TAESD for live previews: one TAESD, or a folder with one per family (taesd_decoder.safetensors,
   * taesdxl_decoder.safetensors). Default: `<models-dir>/VAE-approx`, where A1111 keeps them.
   */
  taesd?: string;
}

export class JobRunner implements Runner {
  private loaded?: { name: string; path: string; pipe: StableDiffusion; preview?: Promise<TinyVAE | undefined> };
  private readonly said = new Set<string>();
  private upscalerModel?: Upscaler;
  /** The running job's phase listener: the pipeline keeps the one it was loaded with, this forwards to the job's. */
  private onPhase?: (e: PhaseEvent) => void;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly runtime: RuntimeOptions = {},
    private readonly options: RunnerOptions = {},
  ) {}

  /** The job's model, loading it (and letting go of the previous one) when it changes. */
  private async pipeline(name: string): Promise<StableDiffusion> {
    const entry = this.registry.resolve(name);
    if (this.loaded?.name !== entry.name) {
      await this.unload();
      const pipe = await StableDiffusion.load(entry.path, { ...this.runtime, onProgress: (e) => this.onPhase?.(e) });
      this.loaded = { name: entry.name, path: entry.path, pipe };
    }
    return this.loaded.pipe;
  }

  private async unload(): Promise<void> {
    const loaded = this.loaded;
    this.loaded = undefined;
    await loaded?.pipe.dispose();
    await (await loaded?.preview)?.dispose();
  }

  /** A warning, once per runner (a setting that cannot be honoured is not repeated every job). */
  private sayOnce(message: string): void {
    if (this.said.has(message)) return;
    this.said.add(message);
    this.runtime.onWarning?.(message);
  }

  /** The loaded model's TAESD decoder for previews, loaded on first use; undefined (said once) when none fits. */
  private previewDecoder(): Promise<TinyVAE | undefined> {
    const loaded = this.loaded!;
    loaded.preview ??= (async () => {
      const vaeApprox = this.registry.modelsDir && join(this.registry.modelsDir, 'VAE-approx');
      const source = this.options.taesd ?? (vaeApprox && existsSync(vaeApprox) ? vaeApprox : undefined);
      if (!source) {
        this.sayOnce('TAESD live previews asked for, but no TAESD is at hand: give --taesd FILE|DIR or put taesd_decoder.safetensors / taesdxl_decoder.safetensors in <models-dir>/VAE-approx; showing the cheap approximation');
        return undefined;
      }
      try {
        return await modelTinyVAE(loaded.path, source, '--taesd', { ...this.runtime, onWarning: (m) => this.sayOnce(m) });
      } catch (e) {
        this.sayOnce(`TAESD live previews for ${loaded.name}: ${(e as Error).message}; showing the cheap approximation`);
        return undefined;
      }
    })();
    return loaded.preview;
  }

  /** An upscaler by A1111's name: None, Lanczos, Nearest, or a model in the registry (loaded, the last one kept). */
  private async upscaler(name: string): Promise<BuiltinUpscaler | Upscaler> {
    const builtin = builtinUpscaler(name);
    if (builtin) return builtin;
    const entry = this.registry.upscalers().resolve(name);
    if (this.upscalerModel?.path !== entry.path) {
      await this.upscalerModel?.dispose();
      this.upscalerModel = undefined;
      const onProgress = (e: PhaseEvent): void => this.onPhase?.(e);
      this.upscalerModel = await phase(onProgress, 'load:upscaler', () => Upscaler.load(entry.path, { ...this.runtime, onProgress, name: entry.name }));
    }
    return this.upscalerModel;
  }

  async run(job: QueueJob, control: JobControl, onProgress: (p: JobProgress) => void = () => {}): Promise<JobResult> {
    return job.kind === 'extras' ? this.runExtras(job, control, onProgress) : this.runGeneration(job, control, onProgress);
  }

  private async runExtras(job: ExtrasJob, control: JobControl, onProgress: (p: JobProgress) => void): Promise<JobResult> {
    const upscaler = await this.upscaler(job.upscaler);
    const upscaler2 = job.upscaler2Visibility > 0 ? await this.upscaler(job.upscaler2) : undefined;
    const images: JobResult['images'] = [];
    for (const [index, img] of job.images.entries()) {
      if (control.interrupted) break;
      const onTile = (step: number, steps: number): void => {
        if (control.interrupted) throw new Stopped();
        onProgress({ image: index, images: job.images.length, step, steps, interrupted: control.interrupted });
      };
      try {
        const r = await upscaleExtras(fromWire(img), { ...job, upscaler, upscaler2, upscale: { onTile } });
        const info = extrasInfotext(r.info);
        images.push({ png: Buffer.from(encodePng(r.image, info ? { postprocessing: info } : {})).toString('base64'), seed: -1, parameters: info });
      } catch (e) {
        if (!(e instanceof Stopped)) throw e;
      }
    }
    return { images, interrupted: control.interrupted, timing: [] };
  }

  /** The job's init image; Tiled Diffusion's upscale first (A1111's Upscaler.upscale, then the resize mode), reported in tiles and stopped by interrupt. */
  private async initImage(job: JobSpec, control: JobControl, onProgress: (p: JobProgress) => void): Promise<RgbImage | undefined> {
    const init = job.initImage && fromWire(job.initImage);
    const u = job.initUpscale;
    if (!init || !u) return init;
    const onTile = (step: number, steps: number): void => {
      if (control.interrupted) throw new Stopped();
      onProgress({ image: 0, images: job.seeds.length, step, steps, interrupted: false });
    };
    return fitImage(await upscaleBy(init, u.scale, await this.upscaler(u.upscaler), { onTile }), job.width, job.height, u.resizeMode);
  }

  private async runGeneration(job: JobSpec, control: JobControl, onProgress: (p: JobProgress) => void): Promise<JobResult> {
    let last: JobProgress = { image: 0, images: job.seeds.length, step: 0, steps: job.steps };
    let preview: string | undefined;
    // The slow phases in progress, innermost last: loading, graphs and sessions made on first use.
    const phases: NonNullable<JobProgress['phase']>[] = [];
    const report = (): void =>
      onProgress({ ...last, ...(preview && { preview }), ...(phases.length > 0 && { phase: phases[phases.length - 1] }), interrupted: control.interrupted, skipped: control.skipped });
    control.onChange = report;
    const clock = new StepClock();
    this.onPhase = (e) => {
      clock.phase(e);
      if (e.state === 'start') phases.push({ name: e.phase, since: Date.now() });
      else phases.splice(phases.map((p) => p.name).lastIndexOf(e.phase), 1);
      report();
    };
    try {
      const pipe = await this.pipeline(job.model);
      const hiresUpscaler = job.hires && ((HIRES_UPSCALERS as readonly string[]).includes(job.hires.upscaler) ? (job.hires.upscaler as HiresUpscaler) : await this.upscaler(job.hires.upscaler));
      const sdUpscaler = job.sdUpscale && (await this.upscaler(job.sdUpscale.upscaler));
      let initImage: RgbImage | undefined;
      try {
        initImage = await this.initImage(job, control, onProgress);
      } catch (e) {
        if (e instanceof Stopped) return { images: [], interrupted: true, timing: [] };
        throw e;
      }
      const base: PipelineOptions = {
        prompt: job.prompt,
        negativePrompt: job.negativePrompt,
        width: job.width,
        height: job.height,
        steps: job.steps,
        cfg: job.cfg,
        sampler: job.sampler,
        karras: job.karras,
        timestepSpacing: job.timestepSpacing,
        eta: job.eta,
        clipSkip: job.clipSkip,
        attention: job.attention,
        deepcache: job.deepcache,
        sMinUncond: job.sMinUncond,
        sMinUncondAll: job.sMinUncondAll,
        batchCondUncond: job.batchCondUncond,
        loraDir: this.registry.loraDir,
        ...(initImage && { initImage, strength: job.strength }),
        ...(job.mask && { mask: { ...job.mask, image: fromWire(job.mask.image) } }),
        ...(job.hires && { hires: { ...job.hires, upscaler: hiresUpscaler === 'none' ? 'lanczos' : hiresUpscaler! } }),
        ...(job.tiling && { tiling: job.tiling }),
        ...(job.sdUpscale && { sdUpscale: { ...job.sdUpscale, upscaler: sdUpscaler } }),
        ...(job.strengthRule && { strengthRule: job.strengthRule }),
        ...(job.controlnets && {
          controlnets: job.controlnets.map((u) => ({
            ...u,
            model: this.registry.resolveControlNet(u.model).path,
            image: u.image && fromWire(u.image),
            mask: u.mask && fromWire(u.mask),
          })),
        }),
      };
      const images: JobResult['images'] = [];
      // A preview made while a step is being reported goes out with that step's report.
      let stepping = false;
      const live =
        job.preview === 'off'
          ? undefined
          : new LivePreview(
              (png) => {
                preview = Buffer.from(png).toString('base64');
                if (!stepping) report();
              },
              job.preview === 'taesd' ? await this.previewDecoder() : undefined,
              (e) => this.sayOnce(`TAESD live preview failed (${e.message}); showing the cheap approximation`),
            );
      try {
        for (const [index, seed] of job.seeds.entries()) {
          if (control.interrupted) break;
          control.skipped = false;
          const onStep = (s: StepInfo): void => {
            if (control.interrupted || control.skipped) throw new Stopped();
            // Denoising steps only: an upscaler model's tiles and the decode are not steps.
            if (s.phase === 'denoise' || s.phase === 'hires') clock.step(s.pass ?? 1);
            last = { image: index, images: job.seeds.length, step: s.step, steps: s.total };
            stepping = true;
            if (s.latents) live?.update(s.latents);
            stepping = false;
            report();
          };
          try {
            const r = await pipe.generate({ ...base, seed }, { onStep });
            for (const img of r.images) images.push({ png: Buffer.from(encodePng(img, { parameters: img.parameters })).toString('base64'), seed, parameters: img.parameters });
          } catch (e) {
            if (!(e instanceof Stopped)) throw e;
          }
        }
      } finally {
        await live?.settle();
      }
      return { images, interrupted: control.interrupted, timing: clock.passes(job) };
    } finally {
      this.onPhase = undefined;
    }
  }

  async dispose(): Promise<void> {
    await this.unload();
    await this.upscalerModel?.dispose();
    this.upscalerModel = undefined;
  }
}
