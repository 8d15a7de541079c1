/**
 * diffusers' LCMScheduler (v0.26): multistep latent consistency sampling (arXiv 2310.04378,
 * Algorithm 3). Each step turns the model output into x0, applies the consistency model's
 * boundary condition (c_skip, c_out at timestep · timestep_scaling), then noises that estimate
 * afresh to the next timestep; the last step returns it as it is.
 */
import { tensor, type Tensor } from '../tensor.js';
import { ConsistencyScheduler } from './consistency.js';
import { ConfigReader } from './config.js';
import { seededRandn, type Randn } from './euler-ancestral.js';

const f = Math.fround;
const SIGMA_DATA2 = 0.25;

export class LcmScheduler extends ConsistencyScheduler {
  private readonly timestepScaling: number;
  /** clip_sample_range when clip_sample is set. */
  private readonly clipRange: number | null;

  constructor(config: object, randn: Randn = seededRandn(0)) {
    const r = new ConfigReader(config, 'LCM');
    super(r, randn);
    this.timestepScaling = r.number('timestep_scaling', 10);
    this.clipRange = r.bool('clip_sample', false) ? f(r.number('clip_sample_range', 1)) : null;
    r.unsupported('thresholding', [false], false);
  }

  /** The boundary condition's weights of x_t and of x0 at timestep `t` (float32, as torch). */
  private scalings(t: number): { cSkip: number; cOut: number } {
    const scaled = f(t * f(this.timestepScaling));
    const denom = f(f(scaled * scaled) + SIGMA_DATA2);
    return { cSkip: f(SIGMA_DATA2 / denom), cOut: f(scaled / f(Math.sqrt(denom))) };
  }

  step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    const i = this.index(modelOutput, t, x);
    const last = i === this.timesteps.length - 1;
    let { x0 } = this.predict(modelOutput.data, x.data, this.ac[t]!);
    const range = this.clipRange;
    if (range !== null) x0 = x0.map((v) => Math.min(Math.max(v, -range), range));
    const { cSkip, cOut } = this.scalings(t);
    const denoised = x0.map((v, j) => f(f(cOut * v) + f(cSkip * x.data[j]!)));
    if (last) return tensor(denoised, x.dims);
    // Fresh noise to the next timestep's level; none on the last step (so none for one step).
    const aPrev = this.ac[this.timesteps[i + 1]!]!;
    return this.withNoise(denoised, f(Math.sqrt(aPrev)), f(Math.sqrt(f(1 - aPrev))), x.dims);
  }
}
