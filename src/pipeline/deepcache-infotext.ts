/**
 * DeepCache's settings in the PNG `parameters` text. A1111's DeepCache extension
 * (sd-webui-deepcache-standalone) reads one infotext key, `DeepCache pass` (its setting
 * deepcache_enable_pass: disable, second pass, both passes), and keeps the rest in settings
 * whose defaults fill in what an infotext leaves out: refresh every 5 steps, cache level 0,
 * enabled after 40% of the steps (0% in the hires pass). The other keys are todo-sd's:
 * `DeepCache interval`, `DeepCache layer` / `DeepCache block` (when not 0), `DeepCache start`,
 * and `Hires DeepCache …` where the second pass differs (`Hires DeepCache interval: 1`: off,
 * every step whole).
 */
import type { DeepCacheOptions, ResolvedDeepCache } from './deepcache.js';
import { infotextNumber, pyFloat } from './infotext-values.js';
import { UserError } from '../errors.js';

/** The extension's deepcache_enable_pass values. */
export const DEEPCACHE_PASSES = ['disable', 'second pass', 'both passes'] as const;
/** The extension's defaults (its refresh rate, enable-step percentages). */
export const DEEPCACHE_DEFAULTS = { interval: 5, start: 0.4, hiresStart: 0 };
const HIRES = 'Hires ';
const POINT_KEYS = [
  ['interval', 'DeepCache interval'],
  ['layer', 'DeepCache layer'],
  ['block', 'DeepCache block'],
] as const;

/** The cache point's fields: the interval always, layer and block when not 0. */
function pointFields(o: ResolvedDeepCache): [string, string][] {
  return POINT_KEYS.filter(([k]) => k === 'interval' || o[k] !== 0).map(([k, key]) => [key, String(o[k])]);
}

/** Infotext fields for the DeepCache of the first pass and, with a hires fix, of the second (`undefined`: off). */
export function deepCacheInfotext(first: ResolvedDeepCache | undefined, hires: { second: ResolvedDeepCache | undefined } | undefined): [string, string][] {
  const second = hires?.second;
  if (!first) {
    if (!second) return [];
    const fields: [string, string][] = [['DeepCache pass', 'second pass'], ...pointFields(second)];
    return second.start > 0 ? [...fields, [`${HIRES}DeepCache start`, pyFloat(second.start)]] : fields;
  }
  const fields: [string, string][] = [['DeepCache pass', 'both passes'], ...pointFields(first), ['DeepCache start', pyFloat(first.start)]];
  if (!hires) return fields;
  if (!second) return [...fields, [`${HIRES}DeepCache interval`, '1']];
  for (const [k, key] of POINT_KEYS) if (second[k] !== first[k]) fields.push([HIRES + key, String(second[k])]);
  if (second.start > 0) fields.push([`${HIRES}DeepCache start`, pyFloat(second.start)]);
  return fields;
}

/**
 * Each pass's DeepCache from infotext fields: `first` undefined when off; `second` with a hires
 * fix where it is on, or off while the first pass's is on (false).
 */
export function deepCacheFromInfotext(fields: Readonly<Record<string, string>>, hires: boolean): { first?: DeepCacheOptions; second?: DeepCacheOptions | false } {
  const num = (key: string): number | undefined => infotextNumber(fields, key);
  const pass = fields['DeepCache pass'] ?? ('DeepCache interval' in fields ? 'both passes' : 'disable');
  if (!(DEEPCACHE_PASSES as readonly string[]).includes(pass)) throw new UserError(`infotext: "DeepCache pass: ${pass}" is not one of ${DEEPCACHE_PASSES.join(', ')}`);
  const base = { interval: num('DeepCache interval') ?? DEEPCACHE_DEFAULTS.interval, layer: num('DeepCache layer') ?? 0, block: num('DeepCache block') ?? 0 };
  const first = pass === 'both passes' ? { ...base, start: num('DeepCache start') ?? DEEPCACHE_DEFAULTS.start } : undefined;
  if (!hires || pass === 'disable') return first ? { first } : {};
  const second = {
    interval: num(`${HIRES}DeepCache interval`) ?? base.interval,
    layer: num(`${HIRES}DeepCache layer`) ?? base.layer,
    block: num(`${HIRES}DeepCache block`) ?? base.block,
    start: num(`${HIRES}DeepCache start`) ?? DEEPCACHE_DEFAULTS.hiresStart,
  };
  return { ...(first && { first }), second: second.interval === 1 ? false : second };
}

/** Every key deepCacheFromInfotext reads. */
export const DEEPCACHE_KEYS = ['DeepCache pass', 'DeepCache start', `${HIRES}DeepCache start`, ...POINT_KEYS.flatMap(([, key]) => [key, HIRES + key])];
