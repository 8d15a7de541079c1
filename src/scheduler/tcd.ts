/**
 * diffusers' TCDScheduler (v0.27, the first release with it): trajectory consistency
 * distillation's strategic stochastic sampling (arXiv 2402.19159). From x_t the step predicts x0
 * and ε, goes to the earlier timestep s = ⌊(1 − γ) · t_prev⌋ along them, then adds fresh noise
 * back up to t_prev. γ (diffusers' `eta`) = 0 is deterministic, 1 is fully stochastic.
 */
import { tensor, type Tensor } from '../tensor.js';
import { ConsistencyScheduler } from './consistency.js';
import { ConfigReader } from './config.js';
import { seededRandn, type Randn } from './euler-ancestral.js';

const f = Math.fround;

/** TCD's recommended γ (the default of diffusers' TCDScheduler.step). */
export const TCD_DEFAULT_GAMMA = 0.3;

export class TcdScheduler extends ConsistencyScheduler {
  private readonly gamma: number;

  constructor(config: object, randn: Randn = seededRandn(0), gamma = TCD_DEFAULT_GAMMA) {
    super(new ConfigReader(config, 'TCD'), randn);
    if (typeof gamma !== 'number' || !(gamma >= 0 && gamma <= 1)) {
      throw new Error(`TCD scheduler: eta (gamma) must be a number from 0 (deterministic) to 1 (fully stochastic), got ${gamma}; ${TCD_DEFAULT_GAMMA} is TCD's default`);
    }
    this.gamma = gamma;
  }

  step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    const i = this.index(modelOutput, t, x);
    const last = i === this.timesteps.length - 1;
    const prevT = last ? 0 : this.timesteps[i + 1]!;
    // torch: (1 − γ) · t_prev in float32 (python float × int tensor), floored.
    const s = Math.floor(f(f(1 - this.gamma) * prevT));
    const { x0, eps } = this.predict(modelOutput.data, x.data, this.ac[t]!);
    const alphaS = this.ac[s]!;
    const sqrtAs = f(Math.sqrt(alphaS));
    const sqrtBs = f(Math.sqrt(f(1 - alphaS)));
    const noised = x0.map((v, j) => f(f(sqrtAs * v) + f(sqrtBs * eps[j]!)));
    if (this.gamma === 0 || last) return tensor(noised, x.dims);
    const ratio = f(this.ac[prevT]! / alphaS);
    return this.withNoise(noised, f(Math.sqrt(ratio)), f(Math.sqrt(f(1 - ratio))), x.dims);
  }
}
