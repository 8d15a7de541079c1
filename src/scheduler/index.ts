/**
 * Diffusion schedulers that reproduce diffusers 0.26 step by step (float32 arithmetic where
 * diffusers uses torch, float64 where it uses NumPy), built from a `scheduler_config.json`.
 */
import type { Tensor } from '../tensor.js';
import { DdimScheduler } from './ddim.js';
import { DpmSolverMultistepScheduler } from './dpmpp-2m.js';
import { EulerAncestralScheduler, seededRandn } from './euler-ancestral.js';
import { EulerScheduler } from './euler.js';
import { HeunScheduler } from './heun.js';
import { LmsScheduler } from './lms.js';
import { PndmScheduler } from './pndm.js';
import { UniPcMultistepScheduler } from './unipc.js';
import { UserError } from '../errors.js';

export const SAMPLER_NAMES = ['ddim', 'pndm', 'euler', 'euler-a', 'dpmpp-2m', 'dpmpp-2m-sde', 'heun', 'lms', 'unipc'] as const;

export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** The samplers whose sigmas can follow Karras et al.'s schedule. */
export const KARRAS_SAMPLERS: readonly SamplerName[] = ['euler', 'euler-a', 'dpmpp-2m', 'dpmpp-2m-sde', 'heun', 'lms', 'unipc'];

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
}

export interface SchedulerOptions {
  /** Karras sigmas (rho 7); overrides the config's use_karras_sigmas. Not offered for ddim/pndm. */
  karras?: boolean;
  /** Standard normal samples for the given dims (euler-a, dpmpp-2m-sde); see EulerAncestralScheduler. */
  randn?: (dims: readonly number[]) => Float32Array;
}

/** Builds a scheduler by sampler name from a diffusers scheduler_config.json object. */
export function createScheduler(name: string, config: object, opts: SchedulerOptions = {}): Scheduler {
  const sampler = SAMPLER_NAMES.find((n) => n === name);
  if (sampler === undefined) {
    throw new UserError(`unknown sampler ${JSON.stringify(name)}; valid samplers: ${SAMPLER_NAMES.join(', ')}`);
  }
  if (opts.karras === true && !KARRAS_SAMPLERS.includes(sampler)) {
    throw new UserError(`Karras sigmas are not available for the ${sampler} sampler (only for ${KARRAS_SAMPLERS.join(', ')})`);
  }
  const randn = opts.randn ?? seededRandn(0);
  switch (sampler) {
    case 'ddim':
      return new DdimScheduler(config);
    case 'pndm':
      return new PndmScheduler(config);
    case 'euler':
      return new EulerScheduler(config, opts.karras);
    case 'euler-a':
      return new EulerAncestralScheduler(config, opts.karras, randn);
    // The sampler's name picks the DPM-Solver++ form, whatever the model's config says.
    case 'dpmpp-2m':
      return new DpmSolverMultistepScheduler({ ...config, algorithm_type: 'dpmsolver++' }, opts.karras);
    case 'dpmpp-2m-sde':
      return new DpmSolverMultistepScheduler({ ...config, algorithm_type: 'sde-dpmsolver++' }, opts.karras, randn);
    case 'heun':
      return new HeunScheduler(config, opts.karras);
    case 'lms':
      return new LmsScheduler(config, opts.karras);
    case 'unipc':
      return new UniPcMultistepScheduler(config, opts.karras);
  }
}

export { DdimScheduler, DpmSolverMultistepScheduler, EulerAncestralScheduler, EulerScheduler, HeunScheduler, LmsScheduler, PndmScheduler, UniPcMultistepScheduler };
