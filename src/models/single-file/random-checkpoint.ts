/**
 * `random-model --format single-file`: the random model of `random-model` (same seed, same
 * weights) as one LDM checkpoint with its `.yaml` beside it, for tests of the single-file path.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { stringify } from 'yaml';
import { denseAttention } from '../../attention/dense.js';
import { WeightRecorder } from '../../graph/weights.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { writeSafetensors, type TensorToWrite } from '../../io/safetensors.js';
import { ARCHITECTURE_CONFIGS, type Architecture } from '../architectures.js';
import { buildClipTextGraph, parseClipTextConfig } from '../clip-text.js';
import { randomTensor, rng, type RandomModelOptions } from '../random-model.js';
import { buildUNetGraph, parseUNetConfig } from '../unet.js';
import { buildDecoderGraph, buildEncoderGraph, parseVAEConfig } from '../vae.js';
import { originalConfig, toOriginalLayout, type DiffusersComponent, type NamedTensor } from './original-layout.js';

/** Architectures the LDM layout can hold, by family (`tiny` cannot: LDM's GroupNorm always has 32 groups, tiny's 8). */
const FAMILIES: Partial<Record<Architecture, 'sd1' | 'sd2'>> = { 'tiny-sd2': 'sd2', sd15: 'sd1', sd21: 'sd2' };

function randomComponent(config: Record<string, unknown>, shapes: Map<string, number[]>, next: () => number): DiffusersComponent {
  // Sorted as the folder writer draws them, so that one seed gives one set of weights in both formats.
  const tensors = new Map<string, NamedTensor>();
  for (const [key, shape] of [...shapes].sort(([a], [b]) => a.localeCompare(b))) tensors.set(key, { shape, data: randomTensor(key, shape, next) });
  return { config, tensors };
}

export function writeRandomCheckpoint(outFile: string, arch: string, opts: RandomModelOptions = {}): void {
  const family = FAMILIES[arch as Architecture];
  if (!family) {
    const groups = ARCHITECTURE_CONFIGS[arch as Architecture]?.unet.norm_num_groups;
    const why = groups !== undefined && groups !== 32 ? ` (its GroupNorm has ${String(groups)} groups; the LDM layout always has 32)` : '';
    throw new Error(`--format single-file writes the LDM layout of ${Object.keys(FAMILIES).join(', ')}; got --arch ${arch}${why}`);
  }
  const out = resolve(outFile);
  if (!out.endsWith('.safetensors')) throw new Error(`a single-file checkpoint is written as FILE.safetensors; got --out ${outFile}`);
  const yamlPath = out.replace(/\.safetensors$/, '.yaml');
  if (existsSync(out) || existsSync(yamlPath)) throw new Error(`${out} (or its .yaml) already exists; choose another --out or remove it`);
  const a = ARCHITECTURE_CONFIGS[arch as Architecture];
  const dtype = (opts.dtype ?? a.dtype) === 'fp16' ? 'F16' : 'F32';
  const next = rng(opts.seed ?? 0);
  const progress = opts.onProgress ?? (() => {});

  progress('unet');
  const unetRec = new WeightRecorder();
  buildUNetGraph(parseUNetConfig(a.unet), unetRec, { batch: 1, height: 8, width: 8, textLength: 1 }, denseAttention);
  const unet = randomComponent(a.unet, unetRec.shapes, next);
  progress('vae');
  const vaeCfg = parseVAEConfig(a.vae);
  const vaeRec = new WeightRecorder();
  buildDecoderGraph(vaeCfg, vaeRec, { batch: 1, height: 1, width: 1 });
  buildEncoderGraph(vaeCfg, vaeRec, { batch: 1, height: vaeCfg.scale, width: vaeCfg.scale });
  const vae = randomComponent(a.vae, vaeRec.shapes, next);
  progress('text_encoder');
  const teRec = new WeightRecorder();
  buildClipTextGraph(parseClipTextConfig(a.textEncoder), teRec, { batch: 1, length: 1 });
  const textEncoder = randomComponent(a.textEncoder, teRec.shapes, next);

  const parts = { unet, vae, textEncoder };
  const tensors: Record<string, TensorToWrite> = {};
  for (const [key, t] of [...toOriginalLayout(family, parts)].sort(([x], [y]) => x.localeCompare(y))) tensors[key] = { dtype, shape: t.shape, data: t.data };
  const prediction = a.scheduler.prediction_type === 'v_prediction' ? 'v' : 'epsilon';
  mkdirSync(dirname(out), { recursive: true });
  writeSafetensors(out, tensors, { format: 'pt' });
  try {
    const yaml = `# ${arch} (todo-sd random-model, seed ${opts.seed ?? 0})\n${stringify(originalConfig(family, parts, prediction, a.scheduler))}`;
    writeFileAtomic(yamlPath, Buffer.from(yaml, 'utf8'));
  } catch (e) {
    rmSync(out, { force: true });
    throw e;
  }
}
