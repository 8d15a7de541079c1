/**
 * Upscalers with random weights in the reference code's key layout (BasicSR's RRDBNet names,
 * Real-ESRGAN's SRVGGNetCompact names), taken from the graph builder itself: for tests and for
 * benchmarking the upscaling pass without a download.
 */
import { WeightRecorder } from '../../graph/weights.js';
import { writeSafetensors, type TensorToWrite } from '../../io/safetensors.js';
import { randomTensor, rng } from '../random-model.js';
import type { CompactConfig } from './compact.js';
import type { EsrganConfig } from './esrgan.js';
import { buildUpscalerGraph, type UpscalerConfig } from './upscaler.js';

const esrgan = (upsamples: number, unshuffle: number, blocks = 23): EsrganConfig => ({
  architecture: 'ESRGAN', inChannels: 3, outChannels: 3, features: 64, blocks, growth: 32, upsamples, unshuffle, scale: 2 ** upsamples / unshuffle,
});
const compact = (convs: number): CompactConfig => ({ architecture: 'SRVGGNetCompact', inChannels: 3, outChannels: 3, features: 64, convs, scale: 4 });

/** The shapes of the models A1111 offers by name. */
export const UPSCALER_PRESETS: Record<string, UpscalerConfig> = {
  /** ESRGAN_4x, R-ESRGAN 4x+ */
  'esrgan-x4': esrgan(2, 1),
  /** R-ESRGAN 4x+ Anime6B */
  'esrgan-x4-6b': esrgan(2, 1, 6),
  /** R-ESRGAN 2x+ */
  'esrgan-x2': esrgan(2, 2),
  /** R-ESRGAN General 4xV3 */
  'compact-x4': compact(32),
  /** R-ESRGAN AnimeVideo */
  'compact-x4-16': compact(16),
};

/** Random weights for `config`: convolutions as torch initialises them, PReLU slopes around 0.25. */
export function randomUpscalerTensors(config: UpscalerConfig, seed = 0, dtype: 'F32' | 'F16' = 'F32'): Record<string, TensorToWrite> {
  const recorder = new WeightRecorder();
  const m = config.architecture === 'ESRGAN' ? config.unshuffle : 1;
  buildUpscalerGraph(config, recorder, { height: 4 * m, width: 4 * m });
  const next = rng(seed);
  const out: Record<string, TensorToWrite> = {};
  for (const [key, shape] of recorder.shapes) {
    const prelu = shape.length === 1 && key.endsWith('.weight');
    out[key] = { dtype, shape, data: prelu ? Float32Array.from({ length: shape[0]! }, () => 0.25 + (next() - 0.5) * 0.2) : randomTensor(key, shape, next) };
  }
  return out;
}

export function writeRandomUpscaler(path: string, config: UpscalerConfig, seed = 0, dtype: 'F32' | 'F16' = 'F32'): void {
  writeSafetensors(path, randomUpscalerTensors(config, seed, dtype), { format: 'pt' });
}
