/** What a component's graph looks like on a given runtime: precision and attention forms. */
import { chooseAttentionForm } from '../attention/forms.js';
import type { GraphOptions } from '../graph/builder.js';
import { defaultPrecision, type Precision } from '../graph/precision.js';
import type { RuntimeOptions } from './session.js';

export interface ResolvedGraphOptions extends GraphOptions {
  precision: Precision;
  /** Part of the graph cache key: everything above that shapes the graph. */
  key: { precision: Precision; provider: string; attentionForm: string };
}

/**
 * `fp32Only` keeps a component in fp32 whatever was asked: the VAE when its config says
 * `force_upcast` (diffusers' default; SD's VAE overflows fp16 in its decoder's last blocks).
 */
export function graphOptions(rt: RuntimeOptions, fp32Only = false): ResolvedGraphOptions {
  const provider = rt.executionProvider ?? 'cpu';
  const precision = fp32Only ? 'fp32' : (rt.precision ?? defaultPrecision(provider));
  const override = rt.attentionForm ?? 'auto';
  return {
    precision,
    attentionForm: (shape) => chooseAttentionForm({ ...shape, provider }, override),
    key: { precision, provider, attentionForm: override },
  };
}
