/**
 * `random-model --arch controlnet-*`: a ControlNet with random weights, as a diffusers folder
 * (config.json + diffusion_pytorch_model.safetensors) or as one `.safetensors` file the way
 * A1111 users have them: the original layout (`control_model.*`) with a cldm `.yaml` beside it
 * for SD 1.x / 2.x, diffusers names for SDXL. The weight layout comes from the graph builder.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { denseAttention } from '../attention/dense.js';
import { WeightRecorder } from '../graph/weights.js';
import { writeFileAtomic } from '../io/atomic.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { CONTROLNET_ARCHITECTURES, CONTROLNET_CONFIGS, type ControlNetArchitecture } from './architectures.js';
import { buildControlNetGraph, parseControlNetConfig } from './controlnet.js';
import { randomTensor, rng, type RandomModelOptions } from './random-model.js';
import { originalControlNetKey } from './single-file/ldm-controlnet.js';

export function isControlNetArchitecture(arch: string): arch is ControlNetArchitecture {
  return (CONTROLNET_ARCHITECTURES as readonly string[]).includes(arch);
}

/** The ControlNet's tensors (diffusers names, sorted), drawn from the seed. */
function randomTensors(arch: ControlNetArchitecture, opts: RandomModelOptions): { config: Record<string, unknown>; tensors: Record<string, TensorToWrite> } {
  const { config, base } = CONTROLNET_CONFIGS[arch];
  const rec = new WeightRecorder();
  buildControlNetGraph(parseControlNetConfig(config), rec, { batch: 1, height: 8, width: 8, textLength: 1 }, denseAttention);
  const dtype = (opts.dtype ?? (base.includes('tiny') ? 'fp32' : 'fp16')) === 'fp16' ? 'F16' : 'F32';
  const next = rng(opts.seed ?? 0);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [key, shape] of [...rec.shapes].sort(([a], [b]) => a.localeCompare(b))) tensors[key] = { dtype, shape, data: randomTensor(key, shape, next) };
  return { config, tensors };
}

/** A diffusers ControlNet folder; written to a temporary sibling and renamed, so an interrupted run leaves nothing. */
export function writeRandomControlNet(outDir: string, arch: ControlNetArchitecture, opts: RandomModelOptions = {}): void {
  const out = resolve(outDir);
  if (existsSync(out) && readdirSync(out).length > 0) throw new Error(`${out} already exists and is not empty; choose another --out or remove it`);
  opts.onProgress?.('controlnet');
  const { config, tensors } = randomTensors(arch, opts);
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(tmp);
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(config, null, 2));
    writeSafetensors(join(tmp, 'diffusion_pytorch_model.safetensors'), tensors, { format: 'pt' });
    if (existsSync(out)) rmSync(out, { recursive: true });
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** The same weights (same seed) as one file: the original layout + cldm `.yaml` without text_time, diffusers names for SDXL. */
export function writeRandomControlNetFile(outFile: string, arch: ControlNetArchitecture, opts: RandomModelOptions = {}): void {
  const out = resolve(outFile);
  if (!out.endsWith('.safetensors')) throw new Error(`a single-file ControlNet is written as FILE.safetensors; got --out ${outFile}`);
  const yamlPath = out.replace(/\.safetensors$/, '.yaml');
  if (existsSync(out) || existsSync(yamlPath)) throw new Error(`${out} (or its .yaml) already exists; choose another --out or remove it`);
  opts.onProgress?.('controlnet');
  const { config, tensors } = randomTensors(arch, opts);
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
