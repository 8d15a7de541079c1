/**
 * `random-model --arch controlnet-*`: a ControlNet with random weights, as a diffusers folder
 * (config.json + diffusion_pytorch_model.safetensors) or as one `.safetensors` file the way
 * A1111 users have them: the original layout (`control_model.*`) with a cldm `.yaml` beside it
 * for SD 1.x / 2.x, diffusers names for SDXL. The weight layout comes from the graph builder.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { stringify } from 'yaml';
import { denseAttention } from '../attention/dense.js';
import { WeightRecorder } from '../graph/weights.js';
import { writeFileAtomic } from '../io/atomic.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { CONTROLNET_ARCHITECTURES, CONTROLNET_CONFIGS, type ControlNetArchitecture } from './architectures.js';
import { buildControlNetGraph, parseControlNetConfig } from './controlnet.js';
import { randomTensor, rng, writeComponent, writeFolderAtomic, type RandomModelOptions } from './random-model.js';
import { originalControlNetKey } from './single-file/ldm-controlnet.js';

export function isControlNetArchitecture(arch: string): arch is ControlNetArchitecture {
  return (CONTROLNET_ARCHITECTURES as readonly string[]).includes(arch);
}

function controlNetShapes(config: Record<string, unknown>): Map<string, number[]> {
  const rec = new WeightRecorder();
  buildControlNetGraph(parseControlNetConfig(config), rec, { batch: 1, height: 8, width: 8, textLength: 1 }, denseAttention);
  return rec.shapes;
}

function weightType(arch: ControlNetArchitecture, opts: RandomModelOptions): 'F32' | 'F16' {
  return (opts.dtype ?? (CONTROLNET_CONFIGS[arch].base.includes('tiny') ? 'fp32' : 'fp16')) === 'fp16' ? 'F16' : 'F32';
}

/** A diffusers ControlNet folder (written through a temporary sibling). */
export function writeRandomControlNet(outDir: string, arch: ControlNetArchitecture, opts: RandomModelOptions = {}): void {
  opts.onProgress?.('controlnet');
  const { config } = CONTROLNET_CONFIGS[arch];
  writeFolderAtomic(outDir, (tmp) => writeComponent(tmp, 'diffusion_pytorch_model.safetensors', config, controlNetShapes(config), weightType(arch, opts), rng(opts.seed ?? 0)));
}

/** The same weights (same seed) as one file: the original layout + cldm `.yaml` without text_time, diffusers names for SDXL. */
export function writeRandomControlNetFile(outFile: string, arch: ControlNetArchitecture, opts: RandomModelOptions = {}): void {
  const out = resolve(outFile);
  if (!out.endsWith('.safetensors')) throw new Error(`a single-file ControlNet is written as FILE.safetensors; got --out ${outFile}`);
  const yamlPath = out.replace(/\.safetensors$/, '.yaml');
  if (existsSync(out) || existsSync(yamlPath)) throw new Error(`${out} (or its .yaml) already exists; choose another --out or remove it`);
  opts.onProgress?.('controlnet');
  const { config } = CONTROLNET_CONFIGS[arch];
  // Drawn in the folder writer's order, so that one seed gives the same weights in both formats.
  const next = rng(opts.seed ?? 0);
  const dtype = weightType(arch, opts);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [key, shape] of [...controlNetShapes(config)].sort(([a], [b]) => a.localeCompare(b))) tensors[key] = { dtype, shape, data: randomTensor(key, shape, next) };
  mkdirSync(dirname(out), { recursive: true });
  if (config.addition_embed_type === 'text_time') {
    writeSafetensors(out, tensors, { format: 'pt' });
    return;
  }
  const cfg = parseControlNetConfig(config);
  const blocks = 2 * (cfg.conditioningEmbeddingChannels.length - 1);
  const original: Record<string, TensorToWrite> = {};
  for (const [key, t] of Object.entries(tensors)) original[`control_model.${originalControlNetKey(key, cfg.layersPerBlock, blocks)}`] = t;
  writeSafetensors(out, Object.fromEntries(Object.entries(original).sort(([a], [b]) => a.localeCompare(b))), { format: 'pt' });
  try {
    writeFileAtomic(yamlPath, Buffer.from(`# ${arch} (todo-sd random-model, seed ${opts.seed ?? 0})\n${stringify(cldmConfig(cfg.blockOutChannels, cfg.heads, cfg.crossAttentionDim))}`, 'utf8'));
  } catch (e) {
    rmSync(out, { force: true });
    throw e;
  }
}

/** The part of a cldm `.yaml` the reader needs: the control stage's heads (per-head width when all levels share it). */
function cldmConfig(channels: readonly number[], heads: readonly number[], contextDim: number): Record<string, unknown> {
  const perHead = channels.map((c, i) => c / heads[i]!);
  const headParams = perHead.every((c) => c === perHead[0]) ? { num_head_channels: perHead[0] } : { num_heads: heads[0] };
  const control = { target: 'cldm.cldm.ControlNet', params: { hint_channels: 3, model_channels: channels[0], context_dim: contextDim, ...headParams } };
  return { model: { target: 'cldm.cldm.ControlLDM', params: { control_stage_config: control } } };
}
