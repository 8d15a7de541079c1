/**
 * Runs jobs on a pipeline: loads the job's model (one at a time, kept for the next job), draws
 * each image with its own seed, reports progress (the slow phase in progress, then steps with a
 * latent preview), times its steps, and honours interrupt (stop after the current step, keep
 * the finished images) and skip (drop the current image).
 */
import { encodePng, type RgbImage } from '../io/png.js';
import { StableDiffusion, type GenerateOptions, type StepInfo } from '../pipeline/stable-diffusion.js';
import type { PhaseEvent } from '../runtime/progress.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { JobProgress, JobResult, JobSpec, WireImage } from './jobs.js';
import type { ModelRegistry } from './models.js';
import { latentPreview } from './preview.js';
import { StepClock } from './step-rates.js';

/** GenerateOptions with the fields other branches add under the contracts' names. */
type PipelineOptions = GenerateOptions & {
  initImage?: RgbImage;
  strength?: number;
  mask?: { image: RgbImage; blur?: number; invert?: boolean; fill?: 'original' | 'fill' | 'latent-noise' | 'latent-nothing' };
  hires?: JobSpec['hires'];
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
  run(job: JobSpec, control: JobControl, onProgress?: (p: JobProgress) => void): Promise<JobResult>;
  dispose(): Promise<void>;
}

class Stopped extends Error {}

const fromWire = (w: WireImage): RgbImage => ({ width: w.width, height: w.height, data: new Uint8Array(Buffer.from(w.rgb, 'base64')) });

export function toWire(img: RgbImage): WireImage {
  return { width: img.width, height: img.height, rgb: Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength).toString('base64') };
}

export class JobRunner implements Runner {
  private loaded?: { name: string; pipe: StableDiffusion };
  /** The running job's phase listener: the pipeline keeps the one it was loaded with, this forwards to the job's. */
  private onPhase?: (e: PhaseEvent) => void;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly runtime: RuntimeOptions = {},
  ) {}

  /** The job's model, loading it (and letting go of the previous one) when it changes. */
  private async pipeline(name: string): Promise<StableDiffusion> {
    const entry = this.registry.resolve(name);
    if (this.loaded?.name !== entry.name) {
      await this.loaded?.pipe.dispose();
      this.loaded = undefined;
      this.loaded = { name: entry.name, pipe: await StableDiffusion.load(entry.path, { ...this.runtime, onProgress: (e) => this.onPhase?.(e) }) };
    }
    return this.loaded.pipe;
  }

  async run(job: JobSpec, control: JobControl, onProgress: (p: JobProgress) => void = () => {}): Promise<JobResult> {
    let last: JobProgress = { image: 0, images: job.seeds.length, step: 0, steps: job.steps };
    const report = (p: JobProgress): void => {
      last = p;
      onProgress({ ...p, interrupted: control.interrupted, skipped: control.skipped });
    };
    control.onChange = () => report(last);
    const clock = new StepClock();
    const phases: { name: string; since: number }[] = [];
    this.onPhase = (e) => {
      clock.phase(e);
      if (e.state === 'start') phases.push({ name: e.phase, since: Date.now() });
      else phases.splice(phases.map((p) => p.name).lastIndexOf(e.phase), 1);
      report({ ...last, phase: phases[phases.length - 1] });
    };
    try {
      return await this.runImages(job, control, report, clock);
    } finally {
      this.onPhase = undefined;
    }
  }

  private async runImages(job: JobSpec, control: JobControl, report: (p: JobProgress) => void, clock: StepClock): Promise<JobResult> {
    const pipe = await this.pipeline(job.model);
    const base: PipelineOptions = {
      prompt: job.prompt,
      negativePrompt: job.negativePrompt,
      width: job.width,
      height: job.height,
      steps: job.steps,
      cfg: job.cfg,
      sampler: job.sampler,
      karras: job.karras,
      clipSkip: job.clipSkip,
      attention: job.attention,
      loraDir: this.registry.loraDir,
      ...(job.initImage && { initImage: fromWire(job.initImage), strength: job.strength }),
      ...(job.mask && { mask: { ...job.mask, image: fromWire(job.mask.image) } }),
      ...(job.hires && { hires: job.hires }),
    };
    const images: JobResult['images'] = [];
    for (const [index, seed] of job.seeds.entries()) {
      if (control.interrupted) break;
      control.skipped = false;
      const onStep = (s: StepInfo): void => {
        if (control.interrupted || control.skipped) throw new Stopped();
        if (s.phase !== 'decode') clock.step(s.pass ?? 1);
        const preview = s.latents && latentPreview(s.latents);
        report({ image: index, images: job.seeds.length, step: s.step, steps: s.total, ...(preview && { preview: Buffer.from(preview).toString('base64') }) });
      };
      try {
        const r = await pipe.generate({ ...base, seed }, { onStep });
        for (const img of r.images) images.push({ png: Buffer.from(encodePng(img, { parameters: img.parameters })).toString('base64'), seed, parameters: img.parameters });
      } catch (e) {
        if (!(e instanceof Stopped)) throw e;
      }
    }
    return { images, interrupted: control.interrupted, timing: clock.passes(job) };
  }

  async dispose(): Promise<void> {
    await this.loaded?.pipe.dispose();
    this.loaded = undefined;
  }
}
