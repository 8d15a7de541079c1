/**
 * The guidance combine and the scheduler update of one denoising step as a graph, so that a
 * GPU provider can run them where the U-Net's output already is:
 *
 *   ε = uncond + cfg · (cond − uncond)       (classifier-free guidance; ε = the output without it)
 *   x' = a · x + b · ε                       (the scheduler step)
 *   next U-Net input = s' · x', once per guidance half
 *
 * Deterministic one-step samplers are this linear update for every prediction type (Euler
 * with ε-prediction: a = 1, b = σ_next − σ; DDIM with η = 0); the coefficients are read off the
 * JavaScript scheduler itself by stepping a fresh instance on probe values, so both forms share
 * one definition of the schedule.
 */
import { GraphBuilder, type GraphDef } from '../graph/builder.js';
import { createScheduler, type SamplerName, type SchedulerOptions } from '../scheduler/index.js';

/** Samplers whose step is x' = a·x + b·ε with per-step constants (no history, no noise). */
export const LINEAR_SAMPLERS: readonly SamplerName[] = ['euler', 'ddim'];

export interface LinearStep {
  timestep: number;
  /** U-Net input scale at this step (scaleModelInput). */
  inputScale: number;
  a: number;
  b: number;
}

/**
 * The schedule as linear steps, or null when the sampler's step is not linear: multistep or
 * ancestral samplers, and configs that clip the predicted sample (DDIM's clip_sample).
 */
export function linearSchedule(sampler: SamplerName, schedulerConfig: object, steps: number, opts: Pick<SchedulerOptions, 'karras' | 'timestepSpacing'>): LinearStep[] | null {
  if (!LINEAR_SAMPLERS.includes(sampler)) return null;
  const probe = createScheduler(sampler, schedulerConfig, opts);
  probe.setTimesteps(steps);
  const x = Float32Array.of(1, 0, 0.5, -2);
  const eps = Float32Array.of(0, 1, -0.75, 3);
  const out: LinearStep[] = [];
  for (const t of probe.timesteps) {
    const inputScale = probe.scaleModelInput({ data: Float32Array.of(1), dims: [1] }, t).data[0]!;
    const y = probe.step({ data: eps, dims: [4] }, t, { data: x, dims: [4] }).data;
    const a = y[0]!;
    const b = y[1]!;
    for (let i = 2; i < 4; i++) {
      const want = a * x[i]! + b * eps[i]!;
      if (Math.abs(y[i]! - want) > 1e-5 * (Math.abs(a * x[i]!) + Math.abs(b * eps[i]!) + 1e-6)) return null;
    }
    out.push({ timestep: t, inputScale, a, b });
  }
  return out;
}

/** Graph input `coef`: [a, b, next input scale, cfg]. */
export const STEP_COEFFICIENTS = 4;

export function stepCoefficients(step: LinearStep, next: LinearStep | undefined, cfg: number): Float32Array {
  return Float32Array.of(step.a, step.b, next?.inputScale ?? 1, cfg);
}

/**
 * Inputs: noise_pred [G·B, C, H, W] (G = 2 with guidance: uncond half first), latents [B, C, H, W],
 * coef [4]. Outputs: latents_next [B, C, H, W] and model_input_next [G·B, C, H, W]. fp32.
 */
export function buildStepGraph(latentDims: readonly number[], guided: boolean): GraphDef {
  const g = new GraphBuilder('denoise_step');
  const [b, ...rest] = latentDims as [number, ...number[]];
  const groups = guided ? 2 : 1;
  const pred = g.input('noise_pred', [groups * b, ...rest]);
  const x = g.input('latents', latentDims);
  const coef = g.input('coef', [STEP_COEFFICIENTS]);
  const c = (i: number): ReturnType<typeof g.slice> => g.slice(coef, 0, i, i + 1);
  let eps = pred;
  if (guided) {
    const uncond = g.slice(pred, 0, 0, b);
    eps = g.add(uncond, g.mul(c(3), g.sub(g.slice(pred, 0, b, 2 * b), uncond)));
  }
  const next = g.add(g.mul(c(0), x), g.mul(c(1), eps));
  const input = g.mul(next, c(2));
  g.output(next, 'latents_next');
  g.output(guided ? g.concat([input, input], 0) : input, 'model_input_next');
  return g.build();
}
