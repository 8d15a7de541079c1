/** `--deepcache N[,layer,block]` (and `--hires-deepcache`): DeepCache's interval and cache point, or off. */
import { InvalidArgumentError } from 'commander';
import type { DeepCacheOptions } from '../pipeline/deepcache.js';

export type DeepCacheFlag = Omit<DeepCacheOptions, 'start'> | 'off';

export function parseDeepCacheOption(name: string): (v: string) => DeepCacheFlag {
  return (v) => {
    if (v.trim() === 'off') return 'off';
    const m = /^(\d+)(?:,(\d+),(\d+))?$/.exec(v.trim());
    if (!m) throw new InvalidArgumentError(`${name} is off, an interval N or N,layer,block (the helper's cache_interval, cache_layer_id, cache_block_id), e.g. 3 or 3,0,0; got "${v}"`);
    const interval = Number(m[1]);
    if (interval < 1) throw new InvalidArgumentError(`${name}: the interval must be at least 1 (1 = every step runs the whole U-Net); got ${interval}`);
    return m[2] === undefined ? { interval } : { interval, layer: Number(m[2]), block: Number(m[3]) };
  };
}

/** The flag with its start fraction as pipeline options (undefined: off). */
export function deepCacheFromFlag(flag: DeepCacheFlag | undefined, start: number): DeepCacheOptions | undefined {
  return flag === undefined || flag === 'off' ? undefined : { ...flag, start };
}
