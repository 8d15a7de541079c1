/**
 * Classifier-free guidance and AUTOMATIC1111's "Negative Guidance minimum sigma" (NGMS,
 * `s_min_uncond`), as its CFGDenoiser (v1.10, modules/sd_samplers_cfg_denoiser.py) decides it:
 * on the denoiser's calls with an odd 0-based index (every call with "all steps",
 * `s_min_uncond_all`) whose sigma is below s_min_uncond, the negative half is not evaluated and
 * the prediction is the prompt's alone (A1111 stands the cond output in for the uncond one and
 * combines with scale 1: uncond + 1 · (cond − uncond) = cond).
 *
 * Our schedulers count in timesteps; the sigma compared is A1111's for that timestep,
 * k-diffusion's t_to_sigma over the model's training schedule (log-linear between whole
 * timesteps). A1111's own DDIM, PLMS and UniPC pass the timestep in the sigma's place, so
 * there NGMS practically never fires; here every sampler compares the sigma.
 */
import { numel, type Tensor } from '../tensor.js';
import { alphasCumprod, ConfigReader, readNoiseSchedule, trainingSigmas } from '../scheduler/config.js';
import type { Conditioning } from './conditioning-sdxl.js';

export interface NgmsOptions {
  /** s_min_uncond: 0 = off. */
  sigma: number;
  /** s_min_uncond_all: every call below the sigma, not every other one. */
  allSteps: boolean;
}

/** A1111's rule for call `call` (0-based, per pass) at `sigma`: true when the negative half is skipped. */
export function skipsUncond(call: number, sigma: number, o: NgmsOptions): boolean {
  return (call % 2 === 1 || o.allSteps) && o.sigma > 0 && sigma < o.sigma;
}

/** A timestep's sigma as A1111 sees it: exp of the log training sigmas interpolated at t. */
export function timestepSigma(schedulerConfig: object): (t: number) => number {
  const logSigmas = trainingSigmas(alphasCumprod(readNoiseSchedule(new ConfigReader(schedulerConfig, 'NGMS'), true))).map(Math.log);
  const last = logSigmas.length - 1;
  return (t) => {
    const low = Math.min(Math.max(Math.floor(t), 0), last);
    const high = Math.min(Math.ceil(t), last);
    const w = t - Math.floor(t);
    return Math.exp((1 - w) * logSigmas[low]! + w * logSigmas[high]!);
  };
}

/** One half of a guided batch [2B, …] → [B, …]: the negative half comes first. */
function halfRows(t: Tensor, half: 'negative' | 'prompt'): Tensor {
  const b = t.dims[0]! / 2;
  const n = (numel(t.dims) / t.dims[0]!) * b;
  return { data: half === 'negative' ? t.data.subarray(0, n) : t.data.subarray(n), dims: [b, ...t.dims.slice(1)] };
}

/** The prompt's half of a guided batch [2B, …] → [B, …]. */
export function promptRows(t: Tensor): Tensor {
  return halfRows(t, 'prompt');
}

/** The negative half of a guided batch [2B, …] → [B, …]. */
export function negativeRows(t: Tensor): Tensor {
  return halfRows(t, 'negative');
}

function conditioningHalf(c: Conditioning, half: 'negative' | 'prompt'): Conditioning {
  const pick = (t: Tensor): Tensor => halfRows(t, half);
  return { encoderHiddenStates: pick(c.encoderHiddenStates), ...(c.added && { added: { textEmbeds: pick(c.added.textEmbeds), timeIds: pick(c.added.timeIds) } }) };
}

/** The prompt's half of guided conditioning (SDXL's added inputs too). */
export function condHalf(c: Conditioning): Conditioning {
  return conditioningHalf(c, 'prompt');
}

/** The negative half of guided conditioning. */
export function negativeHalf(c: Conditioning): Conditioning {
  return conditioningHalf(c, 'negative');
}

/** uncond + cfg · (cond − uncond) from a guided output [2B, …] (negative half first). */
export function combineGuidance(out: Tensor, cfg: number): Tensor {
  const n = numel(out.dims) / 2;
  const uncond = out.data.subarray(0, n);
  const cond = out.data.subarray(n);
  return { data: uncond.map((u, k) => u + cfg * (cond[k]! - u)), dims: [out.dims[0]! / 2, ...out.dims.slice(1)] };
}
