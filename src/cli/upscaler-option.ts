/** Upscalers named on the command line: built-in ones, models by A1111 name or file name in --upscaler-dir, or a model file. */
import { existsSync, statSync } from 'node:fs';
import { A1111_UPSCALER_NAMES, HIRES_UPSCALERS, type HiresUpscaler } from '../pipeline/hires.js';
import { builtinUpscaler, type BuiltinUpscaler } from '../pipeline/upscale-image.js';
import { UpscalerFolders } from '../models/upscaler/folders.js';
import { loadUpscaler, type Upscaler } from '../models/upscaler/upscaler.js';
import type { RuntimeOptions } from '../runtime/session.js';

/** Our name or A1111's for a built-in hires upscaler (`latent`, `Latent (nearest)`, `lanczos`, …). */
export function builtinHiresUpscaler(v: string): HiresUpscaler | undefined {
  const lower = v.toLowerCase();
  return HIRES_UPSCALERS.find((u) => u === lower || A1111_UPSCALER_NAMES[u].toLowerCase() === lower);
}

/** A model file path, or a model by name in the upscaler folders (A1111's `ESRGAN/` and `RealESRGAN/` inside them too). */
export function loadUpscalerModel(v: string, dirs: readonly string[], runtime: RuntimeOptions): Promise<Upscaler> {
  if (existsSync(v) && statSync(v).isFile()) return loadUpscaler(v, runtime);
  const entry = new UpscalerFolders(dirs).resolve(v);
  return loadUpscaler(entry.path, { ...runtime, name: entry.name });
}

/** An image upscaler (`todo-sd upscale`, SD upscale): None, Lanczos, Nearest or a model. */
export async function imageUpscaler(v: string, dirs: readonly string[], runtime: RuntimeOptions): Promise<BuiltinUpscaler | Upscaler> {
  return builtinUpscaler(v) ?? loadUpscalerModel(v, dirs, runtime);
}
