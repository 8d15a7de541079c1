/**
 * Which part of the schedule an image-to-image pass runs for a strength (img2img's strength, the
 * hires fix's denoise), and at which noise level the init latents start. Two rules:
 *
 * - `diffusers`: StableDiffusionImg2ImgPipeline's cut, the last ⌊steps · strength⌋ steps
 *   (`timesteps[t_start · order:]`; PLMS runs one more); LCM and TCD shorten their distillation
 *   schedule instead and run every step (LatentConsistencyModelImg2ImgPipeline). Where that cut
 *   leaves no step (strength 0 included), diffusers has no answer and A1111's rule decides.
 * - `a1111`: AUTOMATIC1111 v1.10 (`setup_img2img_steps` in sd_samplers_common.py): img2img takes
 *   t_enc = ⌊min(strength, 0.999) · steps⌋ of a `steps`-step schedule; the hires fix runs exactly
 *   its N second-pass steps at the end of a ⌊N / min(denoise, 0.999)⌋-step schedule (t_enc = N − 1),
 *   and at denoise 0 that schedule is empty: the upscaled latents pass through unchanged. The
 *   init is noised to schedule position p0 = S − 1 − t_enc; from there the sampler family decides
 *   (A1111_SPAN).
 */
import { UserError } from '../errors.js';
import type { SamplerName, Scheduler } from '../scheduler/index.js';

export const STRENGTH_RULES = ['diffusers', 'a1111'] as const;
export type StrengthRule = (typeof STRENGTH_RULES)[number];

/**
 * The span A1111 runs after noising to p0, by how it runs the sampler: its k-diffusion samplers
 * (sd_samplers_kdiffusion.py, `sigmas[steps − t_enc − 1:]`) step from p0 to the end; its own DDIM
 * and PLMS loops (sd_samplers_timesteps_impl.py, `range(len(timesteps) − 1)` over
 * `timesteps[:t_enc]`) evaluate from one position after p0 and stop one position before the end,
 * keeping the last timestep's small noise; its UniPC also starts one position after p0 but runs
 * to the end. A1111's LCM is one of its k-diffusion samplers (sd_samplers_lcm.py); TCD, which
 * A1111 v1.10 lacks, is taken as the same kind.
 */
const A1111_SPAN: Record<SamplerName, { skipFirst: boolean; skipLast: boolean }> = {
  euler: { skipFirst: false, skipLast: false },
  'euler-a': { skipFirst: false, skipLast: false },
  heun: { skipFirst: false, skipLast: false },
  lms: { skipFirst: false, skipLast: false },
  'dpmpp-2m': { skipFirst: false, skipLast: false },
  'dpmpp-2m-sde': { skipFirst: false, skipLast: false },
  ddim: { skipFirst: true, skipLast: true },
  pndm: { skipFirst: true, skipLast: true },
  unipc: { skipFirst: true, skipLast: false },
  lcm: { skipFirst: false, skipLast: false },
  tcd: { skipFirst: false, skipLast: false },
};

export interface StrengthRun {
  /** The timestep the init latents are noised to; undefined: they are used as they are. */
  noiseAt?: number;
  /** The timesteps the sampler runs, in order (possibly none). */
  timesteps: number[];
}

export interface StrengthRequest {
  sampler: SamplerName;
  rule: StrengthRule;
  /** img2img: the schedule's steps. Hires fix: the second pass's steps (A1111's hr_second_pass_steps or steps). */
  steps: number;
  strength: number;
  /** The hires fix's second pass (A1111 passes its steps to setup_img2img_steps). */
  hires: boolean;
  /** The model's num_train_timesteps: no schedule may be longer. */
  numTrain: number;
}

/**
 * Sets the scheduler's timesteps for the pass and returns the part that runs. A position is one
 * schedule step; a scheduler that lists a timestep twice (Heun's second evaluation, PLMS's
 * warm-up) starts a step at its last listing, as diffusers' `timesteps[t_start · order:]` does.
 */
export function strengthRun(scheduler: Scheduler, r: StrengthRequest): StrengthRun {
  if (r.rule === 'diffusers' && r.strength > 0 && scheduler.setImg2ImgTimesteps) {
    scheduler.setImg2ImgTimesteps(r.steps, r.strength);
    return { noiseAt: scheduler.timesteps[0], timesteps: [...scheduler.timesteps] };
  }
  if (r.rule === 'diffusers') {
    const init = Math.min(Math.floor(r.steps * r.strength), r.steps);
    if (init > 0) {
      scheduler.setTimesteps(r.steps);
      const timesteps = scheduler.timesteps.slice((r.steps - init) * scheduler.order);
      return { noiseAt: timesteps[0], timesteps };
    }
  }
  const capped = Math.min(r.strength, 0.999);
  const steps = r.hires ? (r.strength > 0 ? Math.floor(r.steps / capped) : 0) : r.steps;
  const tEnc = r.hires ? r.steps - 1 : Math.floor(capped * r.steps);
  if (steps === 0) return { timesteps: [] };
  if (steps > r.numTrain) {
    throw new UserError(
      `hires denoise ${r.strength} with ${r.steps} steps needs a ${steps}-step schedule (A1111 runs the steps at the end of ⌊steps / denoise⌋), ` +
        `more than the model's ${r.numTrain} timesteps; raise the denoise or lower the hires steps`,
    );
  }
  scheduler.setTimesteps(steps);
  const p0 = steps - 1 - tEnc;
  const span = A1111_SPAN[r.sampler];
  if (!span.skipFirst) {
    const timesteps = scheduler.timesteps.slice(p0 * scheduler.order);
    return { noiseAt: timesteps[0], timesteps };
  }
  const ts = scheduler.timesteps;
  const positions = ts.filter((t, i) => i === 0 || t !== ts[i - 1]);
  const at = (p: number): number => ts.lastIndexOf(positions[p]!);
  const end = span.skipLast ? positions.length - 1 : positions.length;
  const timesteps = p0 + 1 < end ? ts.slice(at(p0 + 1), end === positions.length ? ts.length : at(end - 1) + 1) : [];
  return { noiseAt: positions[p0], timesteps };
}
