/**
 * Fidelity beside the image bench's speed rows: the same methods (or stand-ins given for them,
 * such as an explicit ToDo factor where ToDo auto is off at the small size) on a trained model
 * at a small size, a few seeds, through the bench fidelity's run: MSE, PSNR, SSIM and HPF
 * against the dense image of the same seed, with the attention each pass actually used.
 */
import type { RuntimeOptions } from '../runtime/session.js';
import { runFidelityBench, type FidelityRecord } from './fidelity.js';
import { withDense, type ImageMethod, type ImageSetup } from './image.js';
import { attentionLabel } from './report.js';

export interface ImageFidelityOptions extends RuntimeOptions {
  model: string;
  /** The first pass's side (a hires fix doubles it, as in the timed run). */
  size: number;
  /** Images per method: seeds seed, seed + 1, …, prompts taken in turn. */
  images: number;
  prompts: string[];
  /** Each speed row and the method its fidelity run uses. */
  rows: { method: string; fidelity: ImageMethod }[];
  setup: Omit<ImageSetup, 'size' | 'prompt'>;
  /** A TAESD that fits the fidelity model, for methods that decode with one. */
  taesd?: string;
  onLog?: (m: string) => void;
}

interface Measured {
  mse: number;
  psnr: number;
  ssim: number;
  hpf: number;
  denseHpf: number;
  images: number;
}

/** A speed row's fidelity: what ran for it and how far it is from dense, or why it did not run. */
export type FidelityColumns = { method: string; fidelityMethod: string } & ({ skipped: string } | (Measured & { passes: string }));

export async function runImageFidelity(o: ImageFidelityOptions): Promise<{ records: FidelityRecord[]; columns: FidelityColumns[] }> {
  const { rows, setup, size, images, prompts, ...load } = o;
  const skip = (m: ImageMethod): string | undefined => (m.options.vaeDecoder === 'taesd' && !o.taesd ? 'no TAESD for the fidelity model (--fidelity-taesd)' : undefined);
  const unique = [...new Map(rows.map((r) => [r.fidelity.label, r.fidelity])).values()].filter((m) => !skip(m));
  const { records } = await runFidelityBench({
    ...load,
    prompts: Array.from({ length: images }, (_, i) => prompts[i % prompts.length]!),
    sizes: [size],
    methods: withDense(unique),
    steps: setup.steps,
    cfg: setup.cfg,
    seed: setup.seed,
    sampler: setup.sampler,
    karras: setup.karras,
    ...(setup.hires && { shared: { hires: { ...setup.hires } } }),
  });
  const columns = rows.map((r): FidelityColumns => {
    const why = skip(r.fidelity);
    if (why) return { method: r.method, fidelityMethod: r.fidelity.label, skipped: why };
    const rs = records.filter((x) => x.method === r.fidelity.label);
    const mean = (f: (x: FidelityRecord) => number): number => rs.reduce((a, x) => a + f(x), 0) / rs.length;
    return {
      method: r.method,
      fidelityMethod: r.fidelity.label,
      passes: rs[0]!.passes.map((p) => `${p.width}x${p.height} ${attentionLabel(p.attention)}`).join(' → '),
      mse: mean((x) => x.mse),
      // Identical images have an infinite PSNR: capped as the fidelity table caps it.
      psnr: mean((x) => Math.min(x.psnr, 99)),
      ssim: mean((x) => x.ssim),
      hpf: mean((x) => x.hpf),
      denseHpf: mean((x) => x.denseHpf),
      images: rs.length,
    };
  });
  return { records, columns };
}
