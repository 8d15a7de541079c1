/**
 * What one request may ask for, and a memory estimate that refuses a job before any work when
 * it would not fit. The estimate is deliberately coarse and errs high: weights (cast to fp32),
 * the U-Net's live activations at the top level, and the VAE decoder's at full resolution
 * (bounded by a tile when the decode is tiled).
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import type { JobSpec } from './jobs.js';

export const LIMITS = {
  /** Pixels per side, multiples of 8. */
  minSize: 8,
  maxSize: 2048,
  /** Pixels per side with Tiled Diffusion, whose U-Net sees only its views. */
  maxTiledSize: 8192,
  maxSteps: 150,
  maxBatchSize: 8,
  maxIterations: 16,
  maxCfg: 30,
  maxHiresScale: 4,
  /** Request bodies (base64 images included). */
  bodyBytes: 32 * 1024 * 1024,
} as const;

/** Default memory budget for one job: 80% of the machine's memory. */
export const DEFAULT_MEMORY_MIB = Math.floor((totalmem() / 2 ** 20) * 0.8);

const weightBytesCache = new Map<string, number>();

/** Bytes of safetensors weights under a model folder (or of a checkpoint file). */
function weightBytes(path: string): number {
  const hit = weightBytesCache.get(path);
  if (hit !== undefined) return hit;
  let total = 0;
  const st = statSync(path);
  if (st.isFile()) total = st.size;
  else for (const e of readdirSync(path, { withFileTypes: true })) if (e.isDirectory() || e.name.endsWith('.safetensors')) total += weightBytes(join(path, e.name));
  weightBytesCache.set(path, total);
  return total;
}

export interface MemoryEstimate {
  bytes: number;
  weights: number;
  unet: number;
  vae: number;
}

/** U-Net top-level width and VAE decoder width of SD 1.x/2.x; larger families grow with the image too. */
const UNET_TOP_CHANNELS = 320;
const VAE_TOP_CHANNELS = 128;
/** Live feature maps at the widest level during one step / one decode, measured in multiples of one map. */
const UNET_LIVE_MAPS = 24;
const VAE_LIVE_MAPS = 6;

export function estimateJobMemory(job: Pick<JobSpec, 'width' | 'height' | 'cfg' | 'hires' | 'tiling'>, modelPath: string): MemoryEstimate {
  const scale = job.hires?.scale ?? 1;
  const w = Math.round(job.width * scale);
  const h = Math.round(job.height * scale);
  // Twice the files, erring high: fp16 weights double when cast to fp32, and loading reads them through buffers of their own.
  const weights = 2 * weightBytes(modelPath);
  const passes = job.cfg > 1 ? 2 : 1;
  // Tiled Diffusion: the U-Net runs on view batches, never on the whole canvas.
  const window = (job.tiling?.window ?? Infinity) * 8;
  const views = job.tiling ? (job.tiling.viewBatch ?? 1) : 1;
  const unet = UNET_LIVE_MAPS * passes * views * UNET_TOP_CHANNELS * (Math.min(w, window) / 8) * (Math.min(h, window) / 8) * 4;
  const tiled = w * h > 1024 * 1024;
  const decodePixels = tiled ? 512 * 512 : w * h;
  const vae = VAE_LIVE_MAPS * VAE_TOP_CHANNELS * decodePixels * 4;
  return { bytes: weights + unet + vae, weights, unet, vae };
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)} GiB`;

/** An error message when the job would not fit in `budgetMiB`, else undefined. */
export function memoryRefusal(e: MemoryEstimate, budgetMiB: number): string | undefined {
  if (e.bytes <= budgetMiB * 2 ** 20) return undefined;
  return `this job needs about ${gib(e.bytes)} (weights ${gib(e.weights)}, U-Net ${gib(e.unet)}, VAE decode ${gib(e.vae)}) but the server allows ${gib(budgetMiB * 2 ** 20)} per job (--max-memory); ask for a smaller width/height or hr_scale`;
}
