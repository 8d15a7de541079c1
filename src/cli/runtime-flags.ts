/** Command-line flags that choose how models run: provider, precision, attention form, threads. */
import { Option } from 'commander';
import { ATTENTION_FORMS, type AttentionForm } from '../attention/forms.js';
import { PRECISIONS, type Precision } from '../graph/precision.js';
import { EXECUTION_PROVIDERS, type RuntimeOptions } from '../runtime/session.js';

export interface RuntimeFlags {
  provider: string;
  precision?: Precision;
  attentionForm?: AttentionForm | 'auto';
  threads?: number;
  deviceLoop?: 'auto' | 'on' | 'off';
}

export const providerOption = (): Option =>
  new Option('--provider <name>', 'onnxruntime execution provider (cuda and tensorrt where the onnxruntime-node install has them)').choices(EXECUTION_PROVIDERS).default('cpu');
export const precisionOption = (): Option =>
  new Option('--precision <p>', 'compute precision of the U-Net and text encoder (default: fp16 on a GPU provider, fp32 on the CPU)').choices(PRECISIONS);
export const attentionFormOption = (): Option =>
  new Option('--attention-form <form>', 'how attention is computed (default auto: by provider and shape)').choices(['auto', ...ATTENTION_FORMS]);

export const deviceLoopOption = (): Option =>
  new Option('--device-loop <when>', 'keep the denoising loop on the device (auto: on a GPU provider, with euler or ddim)').choices(['auto', 'on', 'off']).default('auto');

export function runtimeFromFlags(f: RuntimeFlags): RuntimeOptions {
  const deviceLoop = f.deviceLoop === 'on' ? true : f.deviceLoop === 'off' ? false : undefined;
  return { executionProvider: f.provider, precision: f.precision, attentionForm: f.attentionForm, threads: f.threads, deviceLoop };
}
