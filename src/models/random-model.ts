/**
 * Writes a model folder in the real diffusers layout with random weights, so that tests and
 * speed benchmarks need no download. The weight layout is taken from the graph builders
 * themselves (every weight they ask for, with its shape), so it is the layout they load.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { WeightRecorder } from '../graph/weights.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { denseAttention } from '../attention/dense.js';
import { ARCHITECTURE_CONFIGS, ARCHITECTURES, type Architecture } from './architectures.js';
import { BUILTIN_MODEL_DIR } from './builtin.js';
import { buildClipTextGraph, parseClipTextConfig } from './clip-text.js';
import { buildUNetGraph, parseUNetConfig } from './unet.js';
import { buildDecoderGraph, buildEncoderGraph, parseVAEConfig } from './vae.js';

export interface RandomModelOptions {
  seed?: number;
  /** Weight dtype on disk; default fp16 for the full-size models, fp32 for the tiny ones. */
  dtype?: 'fp32' | 'fp16';
  onProgress?: (component: string) => void;
}

/** xoshiro128**: fast, seedable, good enough for weights. */
export function rng(seed: number): () => number {
  let a = seed >>> 0 || 1;
  let b = 0x9e3779b9;
  let c = 0x243f6a88;
  let d = 0xb7e15162;
  return () => {
    const r = Math.imul(((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    return r / 4294967296;
  };
}

/**
 * Initial values in the spirit of torch's defaults: matrices and kernels uniform with standard
 * deviation 1/√fan_in (activations keep their scale through the depth), norm scales near 1,
 * small biases, embeddings of standard deviation 0.02 as CLIP's initialiser.
 */
export function randomTensor(key: string, shape: readonly number[], next: () => number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const fill = (center: number, std: number): void => {
    const half = std * Math.sqrt(3);
    for (let i = 0; i < n; i++) out[i] = center + (2 * next() - 1) * half;
  };
  if (key.includes('embedding')) fill(0, 0.02);
  else if (shape.length >= 2) fill(0, 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)));
  else if (key.endsWith('.weight')) fill(1, 0.05);
  else fill(0, 0.02);
  return out;
}

export function writeComponent(dir: string, file: string, config: Record<string, unknown>, shapes: Map<string, number[]>, dtype: 'F32' | 'F16', next: () => number): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const tensors: Record<string, TensorToWrite> = {};
  for (const [key, shape] of [...shapes].sort(([a], [b]) => a.localeCompare(b))) {
    // Drawn when written: SDXL's U-Net in fp32 would not fit in memory at once.
    tensors[key] = { dtype, shape, data: () => randomTensor(key, shape, next) };
  }
  writeSafetensors(join(dir, file), tensors, { format: 'pt' });
}

/** The built-in model's CLIP vocabulary with the given pad token. */
function writeTokenizer(dir: string, padToken: string): void {
  cpSync(join(BUILTIN_MODEL_DIR, 'tokenizer'), dir, { recursive: true });
  const special = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: padToken };
  writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify(special, null, 2));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'CLIPTokenizer', model_max_length: 77, do_lower_case: true, ...special }, null, 2));
}

/** Writes a folder through a temporary sibling: an interrupted run leaves no half model. */
export function writeFolderAtomic(outDir: string, write: (tmp: string) => void): void {
  const out = resolve(outDir);
  if (existsSync(out) && readdirSync(out).length > 0) throw new Error(`${out} already exists and is not empty; choose another --out or remove it`);
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    write(tmp);
    if (existsSync(out)) rmSync(out, { recursive: true });
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

export function writeRandomModel(outDir: string, arch: string, opts: RandomModelOptions = {}): void {
  if (!(ARCHITECTURES as readonly string[]).includes(arch)) throw new Error(`unknown architecture "${arch}"; use one of ${ARCHITECTURES.join(', ')}`);
  const a = ARCHITECTURE_CONFIGS[arch as Architecture];
  const dtype = (opts.dtype ?? a.dtype) === 'fp16' ? 'F16' : 'F32';
  const next = rng(opts.seed ?? 0);
  writeFolderAtomic(outDir, (tmp) => {
    const progress = opts.onProgress ?? (() => {});
    progress('unet');
    const unetCfg = parseUNetConfig(a.unet);
    const unetRec = new WeightRecorder();
    buildUNetGraph(unetCfg, unetRec, { batch: 1, height: 8, width: 8, textLength: 1 }, denseAttention);
    writeComponent(join(tmp, 'unet'), 'diffusion_pytorch_model.safetensors', a.unet, unetRec.shapes, dtype, next);

    progress('vae');
    const vaeCfg = parseVAEConfig(a.vae);
    const vaeRec = new WeightRecorder();
    buildDecoderGraph(vaeCfg, vaeRec, { batch: 1, height: 1, width: 1 });
    buildEncoderGraph(vaeCfg, vaeRec, { batch: 1, height: vaeCfg.scale, width: vaeCfg.scale });
    writeComponent(join(tmp, 'vae'), 'diffusion_pytorch_model.safetensors', a.vae, vaeRec.shapes, dtype, next);

    const encoders: [string, Record<string, unknown>][] = [['text_encoder', a.textEncoder], ...(a.second ? [['text_encoder_2', a.second.textEncoder] as [string, Record<string, unknown>]] : [])];
    for (const [name, config] of encoders) {
      progress(name);
      const teRec = new WeightRecorder();
      // Every weight the checkpoint has: all layers, the final LayerNorm and any projection.
      const cfg = parseClipTextConfig(config);
      buildClipTextGraph(cfg, teRec, { batch: 1, length: 1 }, { kind: cfg.projectionDim === null ? 'last' : 'penultimate', clipSkip: 1 });
      writeComponent(join(tmp, name), 'model.safetensors', config, teRec.shapes, dtype, next);
    }

    progress('tokenizer');
    writeTokenizer(join(tmp, 'tokenizer'), a.padToken);
    if (a.second) writeTokenizer(join(tmp, 'tokenizer_2'), a.second.padToken);

    mkdirSync(join(tmp, 'scheduler'));
    writeFileSync(join(tmp, 'scheduler', 'scheduler_config.json'), JSON.stringify(a.scheduler, null, 2));
    const xl = a.second
      ? { text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'], tokenizer_2: ['transformers', 'CLIPTokenizer'], force_zeros_for_empty_prompt: true }
      : {};
    writeFileSync(
      join(tmp, 'model_index.json'),
      JSON.stringify(
        {
          _class_name: a.pipelineClass ?? (a.second ? 'StableDiffusionXLPipeline' : 'StableDiffusionPipeline'),
          _todo_sd_random_model: { arch, seed: opts.seed ?? 0 },
          unet: ['diffusers', 'UNet2DConditionModel'],
          vae: ['diffusers', 'AutoencoderKL'],
          text_encoder: ['transformers', 'CLIPTextModel'],
          tokenizer: ['transformers', 'CLIPTokenizer'],
          scheduler: ['diffusers', a.schedulerClass],
          ...xl,
        },
        null,
        2,
      ),
    );
  });
}
