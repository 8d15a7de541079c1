/**
 * A TAESD (AutoencoderTiny) with random weights, for tests and benchmarks without a download: a
 * diffusers folder (config.json + diffusion_pytorch_model.safetensors), or madebyollin's two
 * files (`NAME_decoder.safetensors`, `NAME_encoder.safetensors`). The weight layout comes from the
 * graph builders; one seed gives the same weights in both formats.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { WeightRecorder } from '../graph/weights.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { TINY_VAE_ARCHITECTURES, TINY_VAE_CONFIGS, type TinyVAEArchitecture } from './architectures.js';
import { randomTensor, rng, writeComponent, writeFolderAtomic, type RandomModelOptions } from './random-model.js';
import { originalTinyVAEKey, type TinyPart } from './single-file/taesd-layout.js';
import { buildTinyDecoderGraph, buildTinyEncoderGraph, parseTinyVAEConfig } from './taesd.js';

/** An architecture name, or an AutoencoderTiny config of one's own. */
export type TinyVAESpec = TinyVAEArchitecture | (string & Record<never, never>) | { config: Record<string, unknown> };

function resolveSpec(spec: TinyVAESpec, dtype: RandomModelOptions['dtype']): { config: Record<string, unknown>; dtype: 'F32' | 'F16' } {
  let preset: { config: Record<string, unknown>; dtype: 'fp32' | 'fp16' };
  if (typeof spec === 'string') {
    if (!(TINY_VAE_ARCHITECTURES as readonly string[]).includes(spec)) throw new Error(`unknown TAESD architecture "${spec}"; use one of ${TINY_VAE_ARCHITECTURES.join(', ')}`);
    preset = TINY_VAE_CONFIGS[spec as TinyVAEArchitecture];
  } else preset = { config: { _class_name: 'AutoencoderTiny', ...spec.config }, dtype: 'fp32' };
  return { config: preset.config, dtype: (dtype ?? preset.dtype) === 'fp16' ? 'F16' : 'F32' };
}

/** Every weight AutoencoderTiny has, diffusers-named, with its shape. */
function tinyVAEShapes(config: Record<string, unknown>): Map<string, number[]> {
  const cfg = parseTinyVAEConfig(config);
  const rec = new WeightRecorder();
  buildTinyDecoderGraph(cfg, rec, { batch: 1, height: 1, width: 1 });
  buildTinyEncoderGraph(cfg, rec, { batch: 1, height: cfg.scale, width: cfg.scale });
  return rec.shapes;
}

/** A diffusers AutoencoderTiny folder, as madebyollin/taesd on Hugging Face. */
export function writeRandomTinyVAE(outDir: string, spec: TinyVAESpec, opts: RandomModelOptions = {}): void {
  const { config, dtype } = resolveSpec(spec, opts.dtype);
  const shapes = tinyVAEShapes(config);
  writeFolderAtomic(outDir, (tmp) => writeComponent(tmp, 'diffusion_pytorch_model.safetensors', config, shapes, dtype, rng(opts.seed ?? 0)));
}

/**
 * madebyollin's files: `decoderFile` must be named `…decoder.safetensors`; the encoder goes
 * beside it as `…encoder.safetensors` (taesd_decoder / taesd_encoder).
 */
export function writeRandomTinyVAEFiles(decoderFile: string, spec: TinyVAESpec, opts: RandomModelOptions = {}): void {
  const decoderPath = resolve(decoderFile);
  const name = basename(decoderPath);
  if (!name.endsWith('decoder.safetensors')) throw new Error(`madebyollin's TAESD files are NAME_decoder.safetensors and NAME_encoder.safetensors; give --out …_decoder.safetensors (got ${decoderFile})`);
  const encoderPath = join(dirname(decoderPath), `${name.slice(0, -'decoder.safetensors'.length)}encoder.safetensors`);
  for (const p of [decoderPath, encoderPath]) if (existsSync(p)) throw new Error(`${p} already exists; choose another --out or remove it`);
  const { config, dtype } = resolveSpec(spec, opts.dtype);
  const next = rng(opts.seed ?? 0);
  const halves: Record<TinyPart, Record<string, TensorToWrite>> = { encoder: {}, decoder: {} };
  // Drawn in the folder writer's order (sorted diffusers keys), so both formats hold the same weights.
  for (const [key, shape] of [...tinyVAEShapes(config)].sort(([a], [b]) => a.localeCompare(b))) {
    const o = originalTinyVAEKey(key);
    halves[o.part][o.key] = { dtype, shape, data: randomTensor(key, shape, next) };
  }
  mkdirSync(dirname(decoderPath), { recursive: true });
  writeSafetensors(decoderPath, halves.decoder, { format: 'pt' });
  try {
    writeSafetensors(encoderPath, halves.encoder, { format: 'pt' });
  } catch (e) {
    rmSync(decoderPath, { force: true });
    throw e;
  }
}
