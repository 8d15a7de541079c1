/**
 * Fidelity: the same prompts, seeds and initial noise through dense attention and each method;
 * every image is compared with its dense twin (MSE, PSNR, SSIM) and its sharpness measured
 * (HPF), with the time per image.
 */
import type { RgbImage } from '../io/png.js';
import { StableDiffusion } from '../pipeline/stable-diffusion.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { SamplerName } from '../scheduler/index.js';
import { hpf, mse, psnr, ssim } from './metrics.js';
import type { MethodSpec } from './speed.js';

export interface FidelityOptions extends RuntimeOptions {
  model: string;
  prompts: string[];
  sizes: number[];
  methods: MethodSpec[];
  steps: number;
  cfg: number;
  seed: number;
  sampler?: SamplerName;
  karras?: boolean;
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
}

export interface FidelityResult {
  records: FidelityRecord[];
  /** images[size][prompt][method], for the grids. */
  images: Map<number, RgbImage[][]>;
  sampler: SamplerName;
}

export async function runFidelityBench(o: FidelityOptions): Promise<FidelityResult> {
  const withForm = o.methods.find((m) => m.attentionForm);
  if (withForm) throw new Error(`fidelity: "${withForm.label}": attention forms are exact and give the same images; compare them with bench speed (or set --attention-form for the whole run)`);
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
          const { images: [img] } = await pipe.generate({ prompt, width: size, height: size, steps: o.steps, cfg: o.cfg, seed, sampler, karras: o.karras, attention: method.attention, vaeTiling: false });
          const seconds = (performance.now() - t0) / 1000;
          dense ??= img!;
          row.push(img!);
          records.push({ type: 'fidelity', size, prompt, seed, method: method.label, mse: mse(img!, dense), psnr: psnr(img!, dense), ssim: ssim(img!, dense), hpf: hpf(img!), denseHpf: hpf(dense), seconds });
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
