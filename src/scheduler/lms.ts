/**
 * diffusers' LMSDiscreteScheduler (v0.26): the linear multistep method of order 4 on Euler's
 * sigmas. Each step integrates the Lagrange polynomial through the last (up to 4) derivatives
 * over [sigma_i, sigma_i+1]. diffusers integrates numerically (scipy's quad, exact for these
 * cubic polynomials); here the polynomial is integrated in closed form.
 */
import { tensor, type Tensor } from '../tensor.js';
import { checkSameShape } from './common.js';
import { EulerScheduler } from './euler.js';

const f = Math.fround;

export const LMS_ORDER = 4;

/** Coefficients of ∏_k (τ − nodes[k]) / (nodes[j] − nodes[k]) over k ≠ j, lowest power first. */
function lagrangeBasis(nodes: readonly number[], j: number): number[] {
  let poly = [1];
  nodes.forEach((node, k) => {
    if (k === j) return;
    const d = nodes[j]! - node;
    const next = Array<number>(poly.length + 1).fill(0);
    poly.forEach((c, p) => {
      next[p + 1]! += c / d;
      next[p]! -= (c * node) / d;
    });
    poly = next;
  });
  return poly;
}

/** ∫_a^b of a polynomial given by its coefficients, lowest power first. */
function integrate(poly: readonly number[], a: number, b: number): number {
  return poly.reduce((sum, c, p) => sum + (c * (b ** (p + 1) - a ** (p + 1))) / (p + 1), 0);
}

/**
 * diffusers' get_lms_coefficient for every current_order: the weight of the derivative taken
 * `j` steps ago, for the step from sigmas[i] to sigmas[i + 1].
 */
export function lmsCoefficients(sigmas: readonly number[], i: number, order: number): number[] {
  const nodes = Array.from({ length: order }, (_, k) => sigmas[i - k]!);
  return nodes.map((_, j) => integrate(lagrangeBasis(nodes, j), sigmas[i]!, sigmas[i + 1]!));
}

export class LmsScheduler extends EulerScheduler {
  /** The last derivatives, oldest first. */
  private derivatives: Float32Array[] = [];

  constructor(config: object, karras?: boolean) {
    super(config, karras, { owner: 'LMS', predictions: ['epsilon', 'v_prediction'], readsEulerKeys: false, readsKarrasKey: true });
  }

  override setTimesteps(steps: number): void {
    super.setTimesteps(steps);
    this.derivatives = [];
  }

  override step(modelOutput: Tensor, t: number, x: Tensor): Tensor {
    checkSameShape(modelOutput, x, this.owner);
    const i = this.index(t);
    const sigma = this.sg[i]!;
    const x0 = this.predictOriginal(modelOutput.data, x.data, sigma);
    this.derivatives = [...this.derivatives, x.data.map((v, j) => f(f(v - x0[j]!) / sigma))].slice(-LMS_ORDER);
    const order = Math.min(i + 1, LMS_ORDER);
    const coeffs = lmsCoefficients(this.sg, i, order).map(f);
    const newestFirst = [...this.derivatives].reverse();
    // zip() in diffusers: a schedule entered midway (img2img) has fewer derivatives than the order.
    const terms = Math.min(coeffs.length, newestFirst.length);
    const out = x.data.map((v, j) => {
      let acc = f(coeffs[0]! * newestFirst[0]![j]!);
      for (let k = 1; k < terms; k++) acc = f(acc + f(coeffs[k]! * newestFirst[k]![j]!));
      return f(v + acc);
    });
    this.stepIndex = i + 1;
    return tensor(out, x.dims);
  }
}
