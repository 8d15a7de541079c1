/**
 * Pieces the schedulers share: NumPy's float64 timestep arithmetic (diffusers builds timesteps
 * and interpolated sigmas with NumPy), Karras sigmas, and argument checks.
 */
import type { Tensor } from '../tensor.js';
import type { TimestepSpacing } from './config.js';

/** np.round / np.rint: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num): i·step + start, with the last value set to stop exactly. */
export function npLinspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/**
 * np.arange(start, 0, -step) for a float step: NumPy sizes it as ceil(start / step) and fills
 * start + i·delta, where delta = (start - step) - start is the step as it rounds near start.
 */
function npArangeDown(start: number, step: number): number[] {
  const n = Math.ceil((0 - start) / -step);
  const delta = start + -step - start;
  return Array.from({ length: n }, (_, i) => (i === 1 ? start + -step : start + i * delta));
}

/**
 * The timesteps of diffusers' DDIM / Euler family, descending, as NumPy float64 values.
 * `linspace` is left unrounded because Euler keeps those fractional values; DDIM and PNDM round.
 */
export function spacedTimesteps(spacing: TimestepSpacing, numTrain: number, steps: number, offset: number): number[] {
  if (spacing === 'linspace') return npLinspace(0, numTrain - 1, steps).reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(numTrain / steps);
    return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + offset);
  }
  return trailingTimesteps(numTrain, numTrain, steps);
}

/**
 * np.round(np.arange(start, 0, -numTrain / steps)) - 1. For some step counts (61, 103, ...)
 * NumPy's arange yields one extra value, which becomes timestep -1 in diffusers (an index from
 * the end of alphas_cumprod); the schedule is cut to `steps` entries instead.
 */
export function trailingTimesteps(start: number, numTrain: number, steps: number): number[] {
  return npArangeDown(start, numTrain / steps)
    .slice(0, steps)
    .map((t) => roundHalfEven(t) - 1);
}

/** np.interp(x, arange(fp.length), fp): linear interpolation between integer positions, in float64. */
export function npInterp(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1;
  if (x >= last) return fp[last]!;
  if (x <= 0) return fp[0]!;
  const j = Math.floor(x);
  return (fp[j + 1]! - fp[j]!) * (x - j) + fp[j]!;
}

/** Karras et al. (2022) sigmas with rho = 7, as diffusers' `_convert_to_karras` (float64). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  const rho = 7;
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, steps).map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/**
 * Karras sigmas over the whole training range and the whole timesteps they fall on, as
 * diffusers' multistep schedulers (DPM-Solver, UniPC) place them with use_karras_sigmas.
 */
export function karrasTimesteps(trainSigmas: Float32Array, steps: number): { sigmas: number[]; timesteps: number[] } {
  const sigmas = karrasSigmas(trainSigmas[0]!, trainSigmas[trainSigmas.length - 1]!, steps);
  const logSigmas = trainSigmas.map(Math.log);
  return { sigmas, timesteps: sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas))) };
}

/**
 * diffusers' `_sigma_to_t`: the fractional training timestep whose sigma is `sigma`, found by
 * linear interpolation in log-sigma space. `logSigmas` is float32 (np.log of a float32 array),
 * so the denominator is a float32 difference.
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // cumsum(dists >= 0).argmax(): the last index at or below logSigma, or 0 when there is none.
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low]!;
  const hi = logSigmas[low + 1]!;
  const w = Math.min(Math.max((lo - logSigma) / Math.fround(lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

export function checkSteps(steps: number, numTrain: number, owner: string): void {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new Error(`${owner} scheduler: the number of inference steps must be an integer >= 1, got ${steps}`);
  }
  if (steps > numTrain) {
    throw new Error(`${owner} scheduler: ${steps} inference steps exceed the ${numTrain} training timesteps (num_train_timesteps)`);
  }
}

/**
 * diffusers' `_init_step_index`: the position of `t` in the schedule, taking the second match
 * when there are two so that a schedule entered midway (img2img) does not skip a sigma.
 * Returns -1 when `t` is absent.
 */
export function findStepIndex(timesteps: readonly number[], t: number): number {
  const want = Math.fround(t);
  const hits: number[] = [];
  timesteps.forEach((ts, i) => {
    if (Math.fround(ts) === want) hits.push(i);
  });
  return hits.length > 1 ? hits[1]! : (hits[0] ?? -1);
}

/**
 * The multistep schedulers' (DPM-Solver, UniPC) checks and step index: `current`, or on the
 * first step the position of `t` (the last step for a timestep it cannot find, as diffusers).
 */
export function multistepIndex(timesteps: readonly number[], current: number | null, t: number, modelOutput: Tensor, x: Tensor, owner: string): number {
  const n = timesteps.length;
  if (n === 0) throw new Error(`${owner} scheduler: call setTimesteps(steps) before step`);
  checkSameShape(modelOutput, x, owner);
  let i = current;
  if (i === null) {
    const found = findStepIndex(timesteps, t);
    i = found < 0 ? n - 1 : found;
  }
  if (i >= n) throw new Error(`${owner} scheduler: all ${n} steps are done; call setTimesteps again`);
  return i;
}

/** DDPM's forward process in float32: sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·noise (DDIM's and PNDM's add_noise). */
export function addNoiseVp(alphasCumprod: Float32Array, x0: Tensor, noise: Tensor, t: number, owner: string): Tensor {
  checkSameShape(noise, x0, owner);
  if (!Number.isInteger(t) || t < 0 || t >= alphasCumprod.length) {
    throw new Error(`${owner} scheduler: timestep ${t} is not an integer in [0, ${alphasCumprod.length})`);
  }
  const a = alphasCumprod[t]!;
  const sqrtA = Math.fround(Math.sqrt(a));
  const sqrtB = Math.fround(Math.sqrt(Math.fround(1 - a)));
  const n = noise.data;
  return { data: x0.data.map((v, i) => Math.fround(Math.fround(sqrtA * v) + Math.fround(sqrtB * n[i]!))), dims: [...x0.dims] };
}

/** Throws unless setTimesteps ran; returns the steps the schedule was set to. */
export function requireSteps(steps: number | null, owner: string): number {
  if (steps === null) throw new Error(`${owner} scheduler: call setTimesteps(steps) before scaleModelInput/step`);
  return steps;
}

export function checkSameShape(modelOutput: Tensor, sample: Tensor, owner: string): void {
  const a = modelOutput.dims;
  const b = sample.dims;
  if (a.length !== b.length || a.some((d, i) => d !== b[i]) || modelOutput.data.length !== sample.data.length) {
    throw new Error(`${owner} scheduler: model output dims [${a.join(', ')}] differ from sample dims [${b.join(', ')}]`);
  }
}

/**
 * The integer timesteps of diffusers' multistep solvers (DPM-Solver, UniPC), descending: their
 * linspace and leading spacings divide the range into steps + 1 parts and drop the last.
 * `last` is the number of usable training timesteps (DPM-Solver clips by lambda).
 */
export function multistepTimesteps(spacing: TimestepSpacing, last: number, numTrain: number, steps: number, offset: number): number[] {
  if (spacing === 'linspace') return npLinspace(0, last - 1, steps + 1).map(roundHalfEven).reverse().slice(0, -1);
  if (spacing === 'leading') {
    const ratio = Math.floor(last / (steps + 1));
    return Array.from({ length: steps }, (_, i) => (steps - i) * ratio + offset);
  }
  return trailingTimesteps(last, numTrain, steps);
}

/**
 * The multistep solvers' add_noise (DPM-Solver, UniPC): α·x0 + σ_t·noise at the sigma of `t` in
 * the schedule (the last one when `t` is absent), α = 1/sqrt(σ² + 1), σ_t = σ·α, in float32.
 */
export function addNoiseSigmaVp(timesteps: readonly number[], sigmas: readonly number[], x0: Tensor, noise: Tensor, t: number, owner: string): Tensor {
  if (timesteps.length === 0) throw new Error(`${owner} scheduler: call setTimesteps(steps) before addNoise`);
  checkSameShape(noise, x0, owner);
  const found = findStepIndex(timesteps, t);
  const { alpha, sigmaT } = vp(sigmas[found < 0 ? timesteps.length - 1 : found]!);
  const f = Math.fround;
  const n = noise.data;
  return { data: x0.data.map((v, j) => f(f(alpha * v) + f(sigmaT * n[j]!))), dims: [...x0.dims] };
}

/** The VP coefficients of a sigma, and lambda = log(alpha / sigma_t), in float32 as diffusers. */
export function vp(sigma: number): { alpha: number; sigmaT: number; lambda: number } {
  const f = Math.fround;
  const alpha = f(1 / f(Math.sqrt(f(f(sigma * sigma) + 1))));
  const sigmaT = f(sigma * alpha);
  return { alpha, sigmaT, lambda: f(f(Math.log(alpha)) - f(Math.log(sigmaT))) };
}

/**
 * An independent copy of a scheduler: its schedule and its internal state (step index, past
 * model outputs, Heun's half step), as diffusers' panorama pipeline keeps one
 * `copy.deepcopy(scheduler.__dict__)` per view. Arrays, typed arrays and plain objects are
 * copied deeply; functions (the noise source of euler-a and the SDE sampler) stay shared, as
 * diffusers passes one generator to every view's step. Any other object is refused, so that no
 * state is shared by accident.
 */
export function cloneState<T extends object>(source: T): T {
  const copy = Object.create(Object.getPrototypeOf(source) as object) as Record<string, unknown>;
  for (const [key, v] of Object.entries(source)) copy[key] = deepCopy(v, key);
  return copy as T;
}

function deepCopy(v: unknown, path: string): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Float32Array || v instanceof Float64Array || v instanceof Int32Array) return v.slice();
  if (Array.isArray(v)) return v.map((x, i) => deepCopy(x, `${path}[${i}]`));
  if (Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deepCopy(x, `${path}.${k}`)]));
  }
  throw new Error(`scheduler clone: cannot copy "${path}" (a ${(v as object).constructor.name}); schedulers hold only numbers, arrays and plain objects`);
}
