/**
 * DeepCache's step schedule: which U-Net evaluations of a denoising pass run the whole U-Net
 * (and refresh the cached deep feature) and which run only the shallow part on that feature
 * (models/unet-cache.ts says where the U-Net is cut).
 *
 * The rule is the authors' diffusers helper's (DeepCacheSDHelper, skip_mode 'uniform'): the
 * evaluation at timestep t is full when (i − i₀) mod interval = 0, where i is the position of
 * t's first occurrence in the scheduler's timesteps and i₀ that of the pass's first timestep, so
 * a diffusers pipeline with the helper runs the same steps full (PNDM's repeated timestep
 * included). Heun lists each timestep twice (predictor and corrector), which makes that rule
 * degenerate (interval 2 would leave only the first evaluation full); there a step is the
 * evaluation pair diffusers counts, and both evaluations of a full step are full.
 * `start`, as A1111's DeepCache extension ("enabled after the step percentage"), runs the first
 * ⌊start · steps⌋ steps full; every full step refreshes the cache.
 */
import { checkCachePoint } from '../models/unet-cache.js';
import type { UNetConfig } from '../models/unet.js';
import { UserError } from '../errors.js';

export interface DeepCacheOptions {
  /** The whole U-Net runs every `interval` steps, the steps between reuse its deep feature (1: every step full). */
  interval: number;
  /** The cache point's layer, 0 … layers_per_block (default 0, the shallowest branch: the least work per cached step). */
  layer?: number;
  /** The cache point's block (resolution level), 0 … blocks − 1 (default 0). */
  block?: number;
  /** Fraction of the steps, from the first, that always run the whole U-Net (default 0). */
  start?: number;
}

export type ResolvedDeepCache = Required<DeepCacheOptions>;

/** Checks DeepCache options against a U-Net and fills in the defaults; errors name the valid range. */
export function resolveDeepCache(o: DeepCacheOptions, cfg: UNetConfig): ResolvedDeepCache {
  if (!o || typeof o !== 'object') throw new UserError(`DeepCache options must be an object such as { interval: 3 }; got ${JSON.stringify(o)}`);
  const { interval, layer = 0, block = 0, start = 0 } = o;
  if (!Number.isInteger(interval) || interval < 1) throw new UserError(`DeepCache interval must be an integer >= 1 (1 = every step full); got ${JSON.stringify(interval)}`);
  if (typeof start !== 'number' || !(start >= 0 && start <= 1)) throw new UserError(`DeepCache start must be a fraction of the steps in [0, 1]; got ${JSON.stringify(start)}`);
  checkCachePoint(cfg, { block, layer });
  return { interval, layer, block, start };
}

/**
 * For each evaluation of a pass, whether it runs the whole U-Net. `timesteps`: the scheduler's
 * whole list; `run`: the timesteps this pass evaluates (its tail in image-to-image); `order`:
 * the scheduler's (2 for Heun).
 */
export function deepCacheFullSteps(o: Pick<ResolvedDeepCache, 'interval' | 'start'>, timesteps: readonly number[], run: readonly number[], order: number): boolean[] {
  const first = (t: number): number => timesteps.findIndex((s) => Math.fround(s) === Math.fround(t));
  const i0 = first(run[0]!);
  const startSteps = Math.floor(o.start * Math.ceil(run.length / order));
  return run.map((t, i) => {
    const step = Math.floor(i / order);
    const position = order === 1 ? first(t) - i0 : step;
    return step < startSteps || position % o.interval === 0;
  });
}
