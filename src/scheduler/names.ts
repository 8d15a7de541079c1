/**
 * Sampler names as people type them: ours (`dpmpp-2m`) and AUTOMATIC1111's (`DPM++ 2M Karras`),
 * with A1111's old `k_…` aliases; case-insensitive, as A1111's API matches them.
 */
import type { TimestepSpacing } from './config.js';
import { KARRAS_SAMPLERS, SAMPLER_NAMES, type SamplerName } from './index.js';

const A1111_NAME: Record<SamplerName, string> = {
  'euler-a': 'Euler a',
  euler: 'Euler',
  lms: 'LMS',
  heun: 'Heun',
  'dpmpp-2m': 'DPM++ 2M',
  'dpmpp-2m-sde': 'DPM++ 2M SDE',
  ddim: 'DDIM',
  pndm: 'PLMS',
  unipc: 'UniPC',
  // A1111 1.8+ has LCM (a k-diffusion port); TCD is the name Forge, ComfyUI and A1111's TCD extensions use.
  lcm: 'LCM',
  tcd: 'TCD',
};

const ALIASES: Record<string, SamplerName> = {
  k_euler_a: 'euler-a',
  k_euler: 'euler',
  k_lms: 'lms',
  k_heun: 'heun',
  k_dpmpp_2m: 'dpmpp-2m',
  k_dpmpp_2m_sde: 'dpmpp-2m-sde',
  k_lcm: 'lcm',
};

/** The A1111 sampler names accepted, `… Karras` variants included, in A1111's menu order. */
export const A1111_SAMPLERS: readonly string[] = (Object.keys(A1111_NAME) as SamplerName[]).flatMap((s) =>
  KARRAS_SAMPLERS.includes(s) ? [A1111_NAME[s], `${A1111_NAME[s]} Karras`] : [A1111_NAME[s]],
);

/** How A1111 names a sampler in its infotext (`Sampler: DPM++ 2M Karras`). */
export function a1111SamplerName(sampler: SamplerName, karras = false): string {
  return A1111_NAME[sampler] + (karras ? ' Karras' : '');
}

/** Our sampler (and Karras sigmas, when the name asks for them) for any accepted name. */
export function resolveSampler(name: string): { sampler: SamplerName; karras?: boolean } {
  const key = name.trim().toLowerCase();
  const ours = SAMPLER_NAMES.find((s) => s === key);
  if (ours !== undefined) return { sampler: ours };
  const alias = ALIASES[key];
  if (alias !== undefined) return { sampler: alias };
  for (const s of SAMPLER_NAMES) {
    const a1111 = A1111_NAME[s].toLowerCase();
    if (key === a1111) return { sampler: s };
    if (key === `${a1111} karras` && KARRAS_SAMPLERS.includes(s)) return { sampler: s, karras: true };
  }
  throw new Error(`unknown sampler ${JSON.stringify(name)}; use one of ${SAMPLER_NAMES.join(', ')} or an AUTOMATIC1111 name: ${A1111_SAMPLERS.join(', ')}`);
}

/**
 * A1111's `Schedule type` for a timestep spacing asked for: its SGM Uniform (k-diffusion timesteps
 * linspace(999, 0, n + 1)[:-1]) is diffusers' trailing up to fractions of a timestep, its Uniform
 * (linspace(999, 0, n)) is linspace; A1111 has no leading schedule, so that label is ours.
 */
export const SCHEDULE_TYPES: Record<TimestepSpacing, string> = { trailing: 'SGM Uniform', linspace: 'Uniform', leading: 'Leading' };

/** The spacing an A1111 `Schedule type` label (or its name: `sgm_uniform`, `SGMUniform`) stands for, if any. */
export function spacingOfScheduleType(label: string): TimestepSpacing | undefined {
  const key = label.trim().toLowerCase().replace(/[\s_]/g, '');
  return (Object.keys(SCHEDULE_TYPES) as TimestepSpacing[]).find((s) => SCHEDULE_TYPES[s].toLowerCase().replace(/\s/g, '') === key);
}
