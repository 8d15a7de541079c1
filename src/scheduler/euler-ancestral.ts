/**
 * diffusers' EulerAncestralDiscreteScheduler (v0.26): an Euler step down to sigma_down, then
 * fresh noise of scale sigma_up, so that the marginal noise level lands on the next sigma.
 *
 * diffusers offers no Karras sigmas for this class; `karras` here builds Euler's Karras schedule
 * (EulerDiscreteScheduler's construction) and takes ancestral steps on it, as k-diffusion's
 * sample_euler_ancestral does with get_sigmas_karras.
 */
import { numel, tensor, type Tensor } from '../tensor.js';
import { checkSameShape } from './common.js';
import { EulerScheduler } from './euler.js';

const f = Math.fround;

/** Returns `numel(dims)` standard normal samples. */
export type Randn = (dims: readonly number[]) => Float32Array;

/**
 * A fixed-seed fallback (mulberry32 uniforms through Box-Muller): deterministic, but not
 * torch.randn's stream. Pass a torch-compatible `randn` to reproduce diffusers with a seed.
 */
export function seededRandn(seed: number): Randn {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (((z ^ (z >>> 14)) >>> 0) + 1) / 4294967297; // in (0, 1): log() stays finite
  };
  return (dims) => {
    const out = new Float32Array(numel(dims));
    for (let i = 0; i < out.length; i += 2) {
      const radius = Math.sqrt(-2 * Math.log(uniform()));
      const angle = 2 * Math.PI * uniform();
      out[i] = radius * Math.cos(angle);
      if (i + 1 < out.length) out[i + 1] = radius * Math.sin(angle);
    }
    return out;
  };
}

export class EulerAncestralScheduler extends EulerScheduler {
  private readonly randn: Randn;

  constructor(config: object, karras?: boolean, randn: Randn = seededRandn(0)) {
    super(config, karras, { owner: 'Euler ancestral', predictions: ['epsilon', 'v_prediction'], readsEulerKeys: false });
    this.randn = randn;
  }

  override step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    checkSameShape(modelOutput, x, this.owner);
    const i = this.index(t);
    const sigmaFrom = this.sigmas[i]!;
    const sigmaTo = this.sigmas[i + 1]!;
    const from2 = f(sigmaFrom * sigmaFrom);
    const to2 = f(sigmaTo * sigmaTo);
    const sigmaUp = f(Math.sqrt(f(f(to2 * f(from2 - to2)) / from2)));
    const sigmaDown = f(Math.sqrt(f(to2 - f(sigmaUp * sigmaUp))));
    const dt = f(sigmaDown - sigmaFrom);
    const x0 = this.predictOriginal(modelOutput.data, x.data, sigmaFrom);
    // diffusers draws noise on every step, the last (sigma_up = 0) included; so do we, to keep
    // an injected generator's stream aligned with diffusers'.
    const noise = this.randn(x.dims);
    if (noise.length !== x.data.length) {
      throw new Error(`${this.owner} scheduler: randn returned ${noise.length} values for dims [${x.dims.join(', ')}]`);
    }
    const out = x.data.map((v, j) => {
      const derivative = f(f(v - x0[j]!) / sigmaFrom);
      return f(f(v + f(derivative * dt)) + f(noise[j]! * sigmaUp));
    });
    this.stepIndex = i + 1;
    return tensor(out, x.dims);
  }
}
