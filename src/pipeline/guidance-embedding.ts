/**
 * Guidance-distilled U-Nets (LCM, `time_cond_proj_dim`) take the guidance scale as an embedding
 * instead of a second, unconditional pass, as diffusers' pipelines (0.26) run them.
 */
import type { UNetConfig } from '../models/unet.js';
import type { Tensor } from '../tensor.js';

const f = Math.fround;

/** Whether a step runs the U-Net on an unconditional half too: cfg > 1, never for a guidance-distilled U-Net. */
export function classifierFreeGuidance(cfg: number, unet: UNetConfig): boolean {
  return cfg > 1 && unet.timeCondProjDim === null;
}

/**
 * diffusers' get_guidance_scale_embedding(w, dim) (after Google's VDM code), in float32 as torch:
 * the sinusoids of w · 1000 at frequencies exp(−i · ln 10000 / (dim/2 − 1)), sines first, a zero
 * pad for an odd dim; one row per image.
 */
export function guidanceScaleEmbedding(w: number, dim: number, batch: number): Tensor {
  const half = Math.floor(dim / 2);
  if (half < 2) throw new Error(`time_cond_proj_dim must be at least 4 for the guidance embedding; got ${dim}`);
  const rate = f(f(Math.log(10000)) / (half - 1));
  const scaled = f(f(w) * 1000);
  const row = new Float32Array(dim);
  for (let i = 0; i < half; i++) {
    const arg = f(scaled * f(Math.exp(f(i * -rate))));
    row[i] = Math.sin(arg);
    row[half + i] = Math.cos(arg);
  }
  const data = new Float32Array(batch * dim);
  for (let b = 0; b < batch; b++) data.set(row, b * dim);
  return { data, dims: [batch, dim] };
}

/**
 * The U-Net's `timestepCond` for a generation: the embedding of w = cfg − 1 (the pipelines pass
 * the Imagen-form scale minus one) for a guidance-distilled U-Net, nothing for the others.
 */
export function timestepCondition(cfg: number, unet: UNetConfig, batch: number): Tensor | undefined {
  return unet.timeCondProjDim === null ? undefined : guidanceScaleEmbedding(cfg - 1, unet.timeCondProjDim, batch);
}
