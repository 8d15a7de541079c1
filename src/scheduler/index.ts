/**
 * Diffusion schedulers that reproduce diffusers 0.26 step by step (float32 arithmetic where
 * diffusers uses torch, float64 where it uses NumPy), built from a `scheduler_config.json`.
 */
import type { Tensor } from '../tensor.js';
import { TIMESTEP_SPACINGS, type TimestepSpacing } from './config.js';
import { DdimScheduler } from './ddim.js';
import { DpmSolverMultistepScheduler } from './dpmpp-2m.js';
import { EulerAncestralScheduler, seededRandn } from './euler-ancestral.js';
import { EulerScheduler } from './euler.js';
import { HeunScheduler } from './heun.js';
import { LcmScheduler } from './lcm.js';
import { LmsScheduler } from './lms.js';
import { PndmScheduler } from './pndm.js';
import { TcdScheduler } from './tcd.js';
import { UniPcMultistepScheduler } from './unipc.js';

export const SAMPLER_NAMES = ['ddim', 'pndm', 'euler', 'euler-a', 'dpmpp-2m', 'dpmpp-2m-sde', 'heun', 'lms', 'unipc', 'lcm', 'tcd'] as const;

export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** The samplers whose sigmas can follow Karras et al.'s schedule. */
export const KARRAS_SAMPLERS: readonly SamplerName[] = ['euler', 'euler-a', 'dpmpp-2m', 'dpmpp-2m-sde', 'heun', 'lms', 'unipc'];

/** The consistency samplers: their own timestep schedule (original_inference_steps), no spacing, no Karras sigmas. */
export const CONSISTENCY_SAMPLERS: readonly SamplerName[] = ['lcm', 'tcd'];

/**
 * The denoising-loop contract: for each `t` of `timesteps`, feed the model
 * `scaleModelInput(x, t)` and advance with `x = step(modelOutput, t, x)`. Start from noise
 * scaled by `initNoiseSigma`. Schedulers keep state between steps (step counter, past model
 * outputs), so one instance serves one denoising run per setTimesteps call. A scheduler of
 * `order` 2 (Heun) lists 2·steps − 1 timesteps: one model evaluation per entry.
 */
export interface Scheduler {
  readonly timesteps: number[];
  /** The noise levels of the schedule and a final 0 (or sigma_min); [] for DDIM and PNDM. */
  readonly sigmas: number[];
  readonly initNoiseSigma: number;
  readonly order: number;
  setTimesteps(steps: number): void;
  scaleModelInput(x: Tensor, t: number): Tensor;
  step(modelOutput: Tensor, t: number, x: Tensor): Tensor;
  /** diffusers' `add_noise`: `x0` noised to the level of timestep `t` of the current schedule (image-to-image). */
  addNoise(x0: Tensor, noise: Tensor, t: number): Tensor;
  /**
   * An independent copy with the same schedule and internal state (diffusers'
   * `copy.deepcopy(scheduler.__dict__)`), stepping on its own from here; the noise source stays
   * shared. MultiDiffusion keeps one per view.
   */
  clone(): Scheduler;
  /**
   * Image-to-image schedules of the schedulers that take strength into set_timesteps (LCM, TCD):
   * `steps` timesteps from the strength-shortened schedule, all of which run. The others are cut
   * to their last ⌊steps · strength⌋ steps (img2img.ts).
   */
  setImg2ImgTimesteps?(steps: number, strength: number): void;
}

export interface SchedulerOptions {
  /** Karras sigmas (rho 7); overrides the config's use_karras_sigmas. Not offered for ddim/pndm. */
  karras?: boolean;
  /** Standard normal samples for the given dims (euler-a, dpmpp-2m-sde, lcm, tcd); see EulerAncestralScheduler. */
  randn?: (dims: readonly number[]) => Float32Array;
  /** Overrides the config's timestep_spacing (`trailing` for few-step models such as SDXL-Lightning). Not for lcm/tcd. */
  timestepSpacing?: TimestepSpacing;
  /** TCD's γ (diffusers' `eta`), 0–1, default 0.3. Only for tcd. */
  eta?: number;
}

/** Builds a scheduler by sampler name from a diffusers scheduler_config.json object. */
export function createScheduler(name: string, config: object, opts: SchedulerOptions = {}): Scheduler {
  const sampler = SAMPLER_NAMES.find((n) => n === name);
  if (sampler === undefined) {
    throw new Error(`unknown sampler ${JSON.stringify(name)}; valid samplers: ${SAMPLER_NAMES.join(', ')}`);
  }
  if (opts.karras === true && !KARRAS_SAMPLERS.includes(sampler)) {
    throw new Error(`Karras sigmas are not available for the ${sampler} sampler (only for ${KARRAS_SAMPLERS.join(', ')})`);
  }
  if (opts.timestepSpacing !== undefined) {
    if (CONSISTENCY_SAMPLERS.includes(sampler)) {
      throw new Error(`timestep spacing does not apply to the ${sampler} sampler: it picks its steps from its own distillation schedule (original_inference_steps); leave the spacing at the model's`);
    }
    if (!(TIMESTEP_SPACINGS as readonly string[]).includes(opts.timestepSpacing)) {
      throw new Error(`unknown timestep spacing ${JSON.stringify(opts.timestepSpacing)}; use one of ${TIMESTEP_SPACINGS.join(', ')}`);
    }
  }
  if (opts.eta !== undefined && sampler !== 'tcd') throw new Error(`eta (TCD's gamma) applies to the tcd sampler only, not ${sampler}`);
  const withSpacing = opts.timestepSpacing === undefined ? config : { ...config, timestep_spacing: opts.timestepSpacing };
  const randn = opts.randn ?? seededRandn(0);
  switch (sampler) {
    case 'ddim':
      return new DdimScheduler(withSpacing);
    case 'pndm':
      return new PndmScheduler(withSpacing);
    case 'euler':
      return new EulerScheduler(withSpacing, opts.karras);
    case 'euler-a':
      return new EulerAncestralScheduler(withSpacing, opts.karras, randn);
    // The sampler's name picks the DPM-Solver++ form, whatever the model's config says.
    case 'dpmpp-2m':
      return new DpmSolverMultistepScheduler({ ...withSpacing, algorithm_type: 'dpmsolver++' }, opts.karras);
    case 'dpmpp-2m-sde':
      return new DpmSolverMultistepScheduler({ ...withSpacing, algorithm_type: 'sde-dpmsolver++' }, opts.karras, randn);
    case 'heun':
      return new HeunScheduler(withSpacing, opts.karras);
    case 'lms':
      return new LmsScheduler(withSpacing, opts.karras);
    case 'unipc':
      return new UniPcMultistepScheduler(withSpacing, opts.karras);
    case 'lcm':
      return new LcmScheduler(withSpacing, randn);
    case 'tcd':
      return new TcdScheduler(withSpacing, randn, opts.eta);
  }
}

export { DdimScheduler, DpmSolverMultistepScheduler, EulerAncestralScheduler, EulerScheduler, HeunScheduler, LcmScheduler, LmsScheduler, PndmScheduler, TcdScheduler, UniPcMultistepScheduler };
