/**
 * diffusers' HeunDiscreteScheduler (v0.26): Heun's method (Karras et al. 2022, Algorithm 1
 * without churn) on Euler's sigmas. Every step but the last takes two model evaluations, so the
 * schedule lists each timestep after the first twice (2·steps − 1 entries) and the loop calls
 * the model once per entry; the last step is a plain Euler step to sigma 0.
 */
import { tensor, type Tensor } from '../tensor.js';
import { checkSameShape } from './common.js';
import { ConfigReader } from './config.js';
import { EulerScheduler } from './euler.js';

const f = Math.fround;

/** [a, b, c, 0] → [a, b, b, c, c, 0]: torch.cat([x[:1], x[1:-1].repeat_interleave(2), x[-1:]]). */
function interleaveSigmas(x: readonly number[]): number[] {
  return [x[0]!, ...x.slice(1, -1).flatMap((v) => [v, v]), x[x.length - 1]!];
}

export class HeunScheduler extends EulerScheduler {
  override readonly order = 2;
  /** First-order state kept for the correction: derivative, dt and the sample it started from. */
  private pending: { derivative: Float32Array; dt: number; sample: Float32Array } | null = null;

  constructor(config: object, karras?: boolean) {
    super(config, karras, { owner: 'Heun', predictions: ['epsilon', 'v_prediction', 'sample'], readsEulerKeys: false, readsKarrasKey: true });
    new ConfigReader(config, 'Heun').unsupported('clip_sample', [false], false);
  }

  override setTimesteps(steps: number): void {
    super.setTimesteps(steps);
    this.ts = [this.ts[0]!, ...this.ts.slice(1).flatMap((t) => [t, t])];
    this.sg = interleaveSigmas(this.sg);
    this.pending = null;
  }

  override step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    checkSameShape(modelOutput, x, this.owner);
    const i = this.index(t);
    let out: Float32Array;
    if (this.pending === null) {
      const sigma = this.sg[i]!;
      const dt = f(this.sg[i + 1]! - sigma);
      const x0 = this.predictOriginal(modelOutput.data, x.data, sigma);
      const derivative = x.data.map((v, j) => f(f(v - x0[j]!) / sigma));
      out = x.data.map((v, j) => f(v + f(derivative[j]! * dt)));
      this.pending = { derivative, dt, sample: x.data };
    } else {
      // The correction: the model was evaluated at the Euler estimate, at the next sigma.
      const sigmaNext = this.sg[i]!;
      const { derivative: first, dt, sample } = this.pending;
      const x0 = this.predictOriginal(modelOutput.data, x.data, sigmaNext);
      out = sample.map((v, j) => {
        const second = f(f(x.data[j]! - x0[j]!) / sigmaNext);
        return f(v + f(f(f(first[j]! + second) / 2) * dt));
      });
      this.pending = null;
    }
    this.stepIndex = i + 1;
    return tensor(out, x.dims);
  }
}
