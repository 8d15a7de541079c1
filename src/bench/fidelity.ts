/**
 * Fidelity: the same prompts, seeds and initial noise through the first method (dense
 * attention) and each other one; every image is compared with its dense twin (MSE, PSNR, SSIM)
 * and its sharpness measured (HPF), with the time per image.
 */
import type { RgbImage } from '../io/png.js';
import { StableDiffusion, type GenerateOptions, type PassInfo } from '../pipeline/stable-diffusion.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { SamplerName } from '../scheduler/index.js';
import { hpf, mse, psnr, ssim } from './metrics.js';

/** What a method changes in a generation (attention, DeepCache, NGMS, the decoder, …). */
export type GenerationChanges = Omit<GenerateOptions, 'prompt' | 'width' | 'height' | 'seed'>;

export interface FidelityMethod {
  label: string;
  options: GenerationChanges;
}

export interface FidelityOptions extends RuntimeOptions {
  model: string;
  prompts: string[];
  sizes: number[];
  /** The first is the reference the others are compared with. */
  methods: FidelityMethod[];
  steps: number;
  cfg: number;
  seed: number;
  sampler?: SamplerName;
  karras?: boolean;
  /** What every generation shares besides these (e.g. a hires fix); a method's options go over it. */
  shared?: GenerationChanges;
  /** A TAESD beside the model's VAE, for methods that decode with it. */
  taesd?: string;
  onLog?: (m: string) => void;
}

export interface FidelityRecord {
  type: 'fidelity';
  size: number;
  prompt: string;
  seed: number;
  method: string;
  mse: number;
  psnr: number;
  ssim: number;
  hpf: number;
  /** The dense image's HPF, for comparison. */
  denseHpf: number;
  seconds: number;
  /** What each pass ran (the attention as used: ToDo's auto factor resolved for the size). */
  passes: PassInfo[];
}

export interface FidelityResult {
  records: FidelityRecord[];
  /** images[size][prompt][method], for the grids. */
  images: Map<number, RgbImage[][]>;
  sampler: SamplerName;
}

export async function runFidelityBench(o: FidelityOptions): Promise<FidelityResult> {
  const pipe = await StableDiffusion.load(o.model, o);
  const records: FidelityRecord[] = [];
  const images = new Map<number, RgbImage[][]>();
  const sampler = o.sampler ?? pipe.defaultSampler;
  try {
    for (const size of o.sizes) {
      const rows: RgbImage[][] = [];
      for (const [pi, prompt] of o.prompts.entries()) {
        const seed = o.seed + pi;
        const row: RgbImage[] = [];
        let dense: RgbImage | undefined;
        for (const method of o.methods) {
          o.onLog?.(`${size}px, prompt ${pi + 1}/${o.prompts.length}, ${method.label}`);
          const t0 = performance.now();
          const r = await pipe.generate({ vaeTiling: false, ...o.shared, ...method.options, prompt, width: size, height: size, steps: o.steps, cfg: o.cfg, seed, sampler, karras: o.karras });
          const seconds = (performance.now() - t0) / 1000;
          const img = r.images[0]!;
          dense ??= img;
          row.push(img);
          records.push({ type: 'fidelity', size, prompt, seed, method: method.label, mse: mse(img, dense), psnr: psnr(img, dense), ssim: ssim(img, dense), hpf: hpf(img), denseHpf: hpf(dense), seconds, passes: r.settings.passes });
        }
        rows.push(row);
      }
      images.set(size, rows);
    }
  } finally {
    await pipe.dispose();
  }
  return { records, images, sampler };
}
