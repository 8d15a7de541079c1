/**
 * Reading a diffusers `scheduler_config.json` and building the training noise schedule from it.
 *
 * Each diffusers scheduler class has its own defaults and ignores keys it does not know, so
 * every scheduler reads only its own keys through a {@link ConfigReader}, passing its defaults.
 * The schedule is built the way diffusers builds it: torch float32 linspace, square and
 * `1 - beta`, and `torch.cumprod`, which on CPU accumulates in double and rounds each output
 * to float32. Math.fround reproduces each float32 rounding.
 */

const f = Math.fround;

export const BETA_SCHEDULES = ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const;
export type BetaSchedule = (typeof BETA_SCHEDULES)[number];

export const TIMESTEP_SPACINGS = ['leading', 'trailing', 'linspace'] as const;
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];

/** Typed, validated access to a raw config object on behalf of one scheduler class. */
export class ConfigReader {
  private readonly raw: Record<string, unknown>;

  constructor(
    raw: object,
    /** Named in error messages, e.g. "DDIM". */
    readonly owner: string,
  ) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new Error(`${owner} scheduler: the config must be a JSON object (a parsed scheduler_config.json)`);
    }
    this.raw = raw as Record<string, unknown>;
  }

  private fail(key: string, message: string): never {
    throw new Error(`${this.owner} scheduler config: "${key}" ${message}`);
  }

  /** JSON null counts as absent: diffusers configs write null for "use the default". */
  private get(key: string): unknown {
    const v = this.raw[key];
    return v === null ? undefined : v;
  }

  number(key: string, def: number): number {
    const v = this.get(key);
    if (v === undefined) return def;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, `must be a finite number, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A number or null/absent (diffusers' Optional[float] keys such as sigma_min). */
  optionalNumber(key: string): number | null {
    return this.get(key) === undefined ? null : this.number(key, 0);
  }

  integer(key: string, def: number, min: number): number {
    const v = this.number(key, def);
    if (!Number.isInteger(v) || v < min) this.fail(key, `must be an integer >= ${min}, got ${v}`);
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.get(key);
    if (v === undefined) return def;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  choice<T extends string>(key: string, accepted: readonly T[], def: T): T {
    const v = this.get(key);
    if (v === undefined) return def;
    if (typeof v !== 'string' || !(accepted as readonly string[]).includes(v)) {
      this.fail(key, `is ${JSON.stringify(v)}; accepted values: ${accepted.join(', ')}`);
    }
    return v as T;
  }

  /** For options this port does not implement: accept only the value(s) that need no code. */
  unsupported(key: string, supported: readonly unknown[], def: unknown): void {
    const v = this.get(key) ?? def;
    if (!supported.includes(v)) {
      this.fail(key, `= ${JSON.stringify(v)} is not supported by this implementation (supported: ${supported.map((s) => JSON.stringify(s)).join(', ')})`);
    }
  }

  trainedBetas(): number[] | null {
    const v = this.get('trained_betas');
    if (v === undefined) return null;
    if (!Array.isArray(v) || !v.every((b) => typeof b === 'number' && Number.isFinite(b))) {
      this.fail('trained_betas', 'must be a list of numbers');
    }
    return v as number[];
  }
}

export interface NoiseScheduleConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  trainedBetas: readonly number[] | null;
  rescaleBetasZeroSnr: boolean;
}

/** The beta defaults of most diffusers classes (DDPM's); the consistency schedulers default to SD's. */
export interface BetaDefaults {
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
}

const DDPM_BETAS: BetaDefaults = { betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'linear' };

/**
 * The keys every diffusers scheduler shares, with the class's defaults. `withRescale` is set for
 * the classes whose constructor accepts `rescale_betas_zero_snr`; the others ignore it.
 */
export function readNoiseSchedule(r: ConfigReader, withRescale: boolean, defaults: BetaDefaults = DDPM_BETAS): NoiseScheduleConfig {
  const trainedBetas = r.trainedBetas();
  const numTrainTimesteps = r.integer('num_train_timesteps', 1000, 2);
  if (trainedBetas !== null && trainedBetas.length !== numTrainTimesteps) {
    throw new Error(`${r.owner} scheduler config: "trained_betas" has ${trainedBetas.length} values but num_train_timesteps is ${numTrainTimesteps}`);
  }
  return {
    numTrainTimesteps,
    betaStart: r.number('beta_start', defaults.betaStart),
    betaEnd: r.number('beta_end', defaults.betaEnd),
    betaSchedule: r.choice('beta_schedule', BETA_SCHEDULES, defaults.betaSchedule),
    trainedBetas,
    rescaleBetasZeroSnr: withRescale && r.bool('rescale_betas_zero_snr', false),
  };
}

/**
 * torch.linspace(start, end, n, dtype=float32) as the CPU kernel of the torch builds behind
 * diffusers 0.26 computes it (this reproduces the reference sigmas bit for bit; a plain
 * per-element formula is off by an ulp here and there): blocks of 8 lanes are filled, two at a
 * time, as base + k·step from base = start + i·step (or end - (n-1-i)·step past halfway); the
 * elements that do not fill a pair of blocks use that per-element formula. The compiler fuses
 * every multiply-add, so only the sum rounds to float32 (k·step is exact in a double).
 */
function torchLinspaceF32(start: number, end: number, n: number): Float32Array {
  const lanes = 8;
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  const at = (i: number): number => (i < half ? f(s + step * i) : f(e - step * (n - 1 - i)));
  const out = new Float32Array(n);
  const pairsEnd = n - (n % (2 * lanes));
  for (let b = 0; b < pairsEnd; b += lanes) {
    const base = at(b);
    for (let k = 0; k < lanes; k++) out[b + k] = f(base + k * step);
  }
  for (let i = pairsEnd; i < n; i++) out[i] = at(i);
  return out;
}

/** torch.cumprod on a float32 CPU tensor: double accumulator, float32 outputs. */
function cumprodF32(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  let acc = 1;
  for (let i = 0; i < x.length; i++) {
    acc *= x[i]!;
    out[i] = acc;
  }
  return out;
}

/** diffusers' betas_for_alpha_bar with the cosine transform, computed in Python floats. */
function cosineBetas(n: number): Float32Array {
  const alphaBar = (t: number): number => {
    const c = Math.cos(((t + 0.008) / 1.008) * Math.PI / 2);
    return c * c;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999);
  return out;
}

/** diffusers' rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1), op by op in float32. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const sqrtAc = cumprodF32(betas.map((b) => f(1 - b))).map((a) => f(Math.sqrt(a)));
  const first = sqrtAc[0]!;
  const last = sqrtAc[n - 1]!;
  const scale = f(first / f(first - last));
  const ac = sqrtAc.map((s) => {
    const shifted = f(f(s - last) * scale);
    return f(shifted * shifted);
  });
  const out = new Float32Array(n);
  out[0] = f(1 - ac[0]!);
  for (let i = 1; i < n; i++) out[i] = f(1 - f(ac[i]! / ac[i - 1]!));
  return out;
}

/** The training schedule's cumulative alpha products (float32 values), as diffusers builds them. */
export function alphasCumprod(c: NoiseScheduleConfig): Float32Array {
  let betas: Float32Array;
  if (c.trainedBetas !== null) betas = Float32Array.from(c.trainedBetas);
  else if (c.betaSchedule === 'linear') betas = torchLinspaceF32(c.betaStart, c.betaEnd, c.numTrainTimesteps);
  else if (c.betaSchedule === 'scaled_linear') {
    betas = torchLinspaceF32(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), c.numTrainTimesteps).map((b) => f(b * b));
  } else betas = cosineBetas(c.numTrainTimesteps);
  if (c.rescaleBetasZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  return cumprodF32(betas.map((b) => f(1 - b)));
}

/** ((1 - ᾱ) / ᾱ) ** 0.5 per training timestep, in float32 as diffusers computes it with torch. */
export function trainingSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => f(Math.sqrt(f(f(1 - a) / a))));
}
