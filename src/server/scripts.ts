/**
 * A1111 scripts in API requests, mapped onto the pipeline: the Tiled Diffusion extension
 * (`alwayson_scripts: { "Tiled Diffusion": { args: [...] } }`, multidiffusion-upscaler-for-automatic1111's
 * positional arguments) and A1111's own SD upscale (`script_name: "sd upscale"`,
 * `script_args: [info, overlap, upscaler_index, scale_factor]`). What they ask for and this
 * server does not offer is a 422 naming it.
 */
import type { TilingOptions } from '../pipeline/multidiffusion.js';
import { tilingFromExtension } from '../pipeline/tiled-infotext.js';
import { A1111_IMAGE_UPSCALERS, upscaleTarget } from '../pipeline/upscale-image.js';
import { UserError } from '../errors.js';
import { RequestError } from './errors.js';

export const TILED_DIFFUSION_SCRIPT = 'tiled diffusion';
export const SD_UPSCALE_SCRIPT = 'sd upscale';

/**
 * A1111's upscaler list as /sdapi/v1/upscalers gives it: None, Lanczos, Nearest, then the
 * registry's models (`models`, their names in its order); SD upscale's upscaler_index counts in it.
 */
export function upscalerList(models: readonly string[]): string[] {
  return [...Object.values(A1111_IMAGE_UPSCALERS), ...models];
}

/** An upscaler of `list` by A1111 name (in any case), as the list spells it. */
function upscalerByName(name: string, field: string, list: readonly string[]): string {
  const found = list.find((u) => u === name) ?? list.find((u) => u.toLowerCase() === name.toLowerCase());
  if (!found) throw new RequestError(field, `upscaler "${name}" is not offered here; available: ${list.join(', ')} (models are looked up in --models-dir's ESRGAN/ and RealESRGAN/)`);
  return found;
}

/** The args list of an alwayson script, looked up by title in any case (as A1111 does). */
function alwaysOnArgs(scripts: unknown, title: string): { args: unknown[]; key: string } | undefined {
  if (scripts === null || typeof scripts !== 'object') return undefined;
  const key = Object.keys(scripts).find((k) => k.toLowerCase() === title);
  if (key === undefined) return undefined;
  const args = (scripts as Record<string, { args?: unknown }>)[key]?.args ?? [];
  if (!Array.isArray(args)) throw new RequestError(`alwayson_scripts.${key}.args`, `alwayson_scripts.${key}.args must be a list`);
  return { args, key };
}

export interface TiledDiffusionRequest {
  tiling: TilingOptions;
  /** txt2img: the extension's "overwrite image size". */
  size?: { width: number; height: number };
  /** img2img: its upscaler (A1111's name) and scale before tiling, and whether the canvas is the upscaled picture's size. */
  upscale?: { upscaler: string; scale: number; keepInputSize: boolean };
}

/**
 * The Tiled Diffusion extension's arguments: enabled, method, overwrite_size, keep_input_size,
 * image_width, image_height, tile_width, tile_height, overlap, batch_size, upscaler_name,
 * scale_factor, noise_inverse, …, enable_bbox_control, … (defaults for those left out).
 */
export function tiledDiffusionRequest(alwaysOn: unknown, kind: 'txt2img' | 'img2img', upscalers: readonly string[]): TiledDiffusionRequest | undefined {
  const found = alwaysOnArgs(alwaysOn, TILED_DIFFUSION_SCRIPT);
  if (!found) return undefined;
  const { args, key } = found;
  const field = (i: number): string => `alwayson_scripts.${key}.args.${i}`;
  const at = <T>(i: number, def: T, type: 'boolean' | 'number' | 'string'): T => {
    const v = args[i] ?? def;
    if (typeof v !== type) throw new RequestError(field(i), `Tiled Diffusion argument ${i} must be a ${type}; got ${JSON.stringify(v)}`);
    return v as T;
  };
  if (!at(0, false, 'boolean')) return undefined;
  const method = at(1, 'MultiDiffusion', 'string');
  if (method !== 'MultiDiffusion') throw new RequestError(field(1), `Tiled Diffusion method "${method}" is not offered here (only MultiDiffusion)`);
  if (at(12, false, 'boolean')) throw new RequestError(field(12), 'Tiled Diffusion noise inversion is not offered here');
  if (at(18, false, 'boolean')) throw new RequestError(field(18), 'Tiled Diffusion region prompt control is not offered here');
  let tiling: TilingOptions;
  try {
    tiling = tilingFromExtension({ tileWidth: at(6, 96, 'number'), tileHeight: at(7, 96, 'number'), overlap: at(8, kind === 'txt2img' ? 48 : 8, 'number'), batchSize: at(9, 4, 'number') });
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new RequestError(field(6), e.message.replace(/^infotext: /, ''));
  }
  const request: TiledDiffusionRequest = { tiling };
  if (kind === 'txt2img' && at(2, false, 'boolean')) request.size = { width: at(4, 1024, 'number'), height: at(5, 1024, 'number') };
  if (kind === 'img2img') request.upscale = { upscaler: upscalerByName(at(10, 'None', 'string'), field(10), upscalers), scale: at(11, 2, 'number'), keepInputSize: at(3, true, 'boolean') };
  return request;
}

/** SD upscale's script_args: [info, overlap, upscaler_index, scale_factor] (A1111's defaults 64, 0, 2); the upscaler by its name in `upscalers`. */
export function sdUpscaleRequest(scriptName: string | null | undefined, scriptArgs: unknown, upscalers: readonly string[]): { overlap: number; upscaler: string; scale: number } | undefined {
  if (!scriptName) return undefined;
  if (scriptName.toLowerCase() !== SD_UPSCALE_SCRIPT) throw new RequestError('script_name', `script "${scriptName}" is not offered here; available: SD upscale (img2img)`);
  const args = scriptArgs ?? [];
  if (!Array.isArray(args)) throw new RequestError('script_args', 'script_args must be a list: [info, overlap, upscaler_index, scale_factor]');
  const overlap = args[1] ?? 64;
  const index = args[2] ?? 0;
  const scale = args[3] ?? 2;
  if (!Number.isInteger(overlap) || (overlap as number) < 0) throw new RequestError('script_args.1', `SD upscale overlap must be an integer of pixels >= 0; got ${JSON.stringify(overlap)}`);
  if (typeof scale !== 'number') throw new RequestError('script_args.3', `SD upscale scale factor must be a number; got ${JSON.stringify(scale)}`);
  let upscaler: string;
  if (typeof index === 'string') upscaler = upscalerByName(index, 'script_args.2', upscalers);
  else if (Number.isInteger(index) && (index as number) >= 0 && (index as number) < upscalers.length) upscaler = upscalers[index as number]!;
  else throw new RequestError('script_args.2', `SD upscale upscaler_index ${JSON.stringify(index)} is not offered here; available: ${upscalers.map((n, i) => `${i} ${n}`).join(', ')}`);
  return { overlap: overlap as number, upscaler, scale };
}

/**
 * The canvas of the extension's img2img upscale, known before the upscale runs (the job's runner
 * upscales the init picture with A1111's Upscaler.upscale): the upscaled picture's size when
 * keep_input_size, else scale × the request's size; without an upscaler the picture's size
 * (rounded down to multiples of 8) or the request's.
 */
export function tiledDiffusionCanvas(image: { width: number; height: number }, request: NonNullable<TiledDiffusionRequest['upscale']>, width: number, height: number): { width: number; height: number } {
  const none = request.upscaler === A1111_IMAGE_UPSCALERS.none;
  if (request.keepInputSize) {
    const [w, h] = none ? [image.width - (image.width % 8), image.height - (image.height % 8)] : upscaleTarget(image.width, image.height, request.scale);
    return { width: w, height: h };
  }
  return none ? { width, height } : { width: Math.trunc(request.scale * width), height: Math.trunc(request.scale * height) };
}
