/**
 * A1111 scripts in API requests, mapped onto the pipeline: the Tiled Diffusion extension
 * (`alwayson_scripts: { "Tiled Diffusion": { args: [...] } }`, multidiffusion-upscaler-for-automatic1111's
 * positional arguments) and A1111's own SD upscale (`script_name: "sd upscale"`,
 * `script_args: [info, overlap, upscaler_index, scale_factor]`). What they ask for and this
 * server does not offer is a 422 naming it.
 */
import type { RgbImage } from '../io/png.js';
import type { TilingOptions } from '../pipeline/multidiffusion.js';
import { A1111_SD_UPSCALERS, lanczosUpscale, SD_UPSCALERS, upscaleImage, type SdUpscalerName } from '../pipeline/sd-upscale.js';
import { tilingFromExtension } from '../pipeline/tiled-infotext.js';
import { RequestError } from './errors.js';

export const TILED_DIFFUSION_SCRIPT = 'tiled diffusion';
export const SD_UPSCALE_SCRIPT = 'sd upscale';

/** A1111's upscaler list as /sdapi/v1/upscalers gives it: its indices are the script's upscaler_index. */
export const UPSCALER_LIST: readonly string[] = SD_UPSCALERS.map((u) => A1111_SD_UPSCALERS[u]);

/** An upscaler by A1111 name (any case). */
export function upscalerByName(name: string, field: string): SdUpscalerName {
  const found = SD_UPSCALERS.find((u) => A1111_SD_UPSCALERS[u].toLowerCase() === name.toLowerCase());
  if (!found) throw new RequestError(field, `upscaler "${name}" is not offered here; available: ${UPSCALER_LIST.join(', ')}`);
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
  /** img2img: its upscaler and scale before tiling, and whether the canvas is the upscaled picture's size. */
  upscale?: { upscaler: SdUpscalerName; scale: number; keepInputSize: boolean };
}

/**
 * The Tiled Diffusion extension's arguments: enabled, method, overwrite_size, keep_input_size,
 * image_width, image_height, tile_width, tile_height, overlap, batch_size, upscaler_name,
 * scale_factor, noise_inverse, …, enable_bbox_control, … (defaults for those left out).
 */
export function tiledDiffusionRequest(alwaysOn: unknown, kind: 'txt2img' | 'img2img'): TiledDiffusionRequest | undefined {
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
    throw new RequestError(field(6), (e as Error).message.replace(/^infotext: /, ''));
  }
  const request: TiledDiffusionRequest = { tiling };
  if (kind === 'txt2img' && at(2, false, 'boolean')) request.size = { width: at(4, 1024, 'number'), height: at(5, 1024, 'number') };
  if (kind === 'img2img') request.upscale = { upscaler: upscalerByName(at(10, 'None', 'string'), field(10)), scale: at(11, 2, 'number'), keepInputSize: at(3, true, 'boolean') };
  return request;
}

/** SD upscale's script_args: [info, overlap, upscaler_index, scale_factor] (A1111's defaults 64, 0, 2). */
export function sdUpscaleRequest(scriptName: string | null | undefined, scriptArgs: unknown): { overlap: number; upscaler: SdUpscalerName; scale: number } | undefined {
  if (!scriptName) return undefined;
  if (scriptName.toLowerCase() !== SD_UPSCALE_SCRIPT) throw new RequestError('script_name', `script "${scriptName}" is not offered here; available: SD upscale (img2img)`);
  const args = scriptArgs ?? [];
  if (!Array.isArray(args)) throw new RequestError('script_args', 'script_args must be a list: [info, overlap, upscaler_index, scale_factor]');
  const overlap = args[1] ?? 64;
  const index = args[2] ?? 0;
  const scale = args[3] ?? 2;
  if (!Number.isInteger(overlap) || (overlap as number) < 0) throw new RequestError('script_args.1', `SD upscale overlap must be an integer of pixels >= 0; got ${JSON.stringify(overlap)}`);
  if (typeof scale !== 'number') throw new RequestError('script_args.3', `SD upscale scale factor must be a number; got ${JSON.stringify(scale)}`);
  let upscaler: SdUpscalerName;
  if (typeof index === 'string') upscaler = upscalerByName(index, 'script_args.2');
  else if (Number.isInteger(index) && (index as number) >= 0 && (index as number) < UPSCALER_LIST.length) upscaler = upscalerByName(UPSCALER_LIST[index as number]!, 'script_args.2');
  else throw new RequestError('script_args.2', `SD upscale upscaler_index ${JSON.stringify(index)} is not offered here; available: ${UPSCALER_LIST.map((n, i) => `${i} ${n}`).join(', ')}`);
  return { overlap: overlap as number, upscaler, scale };
}

/**
 * The extension's img2img upscale: the init picture upscaled (A1111's Upscaler.upscale), and the
 * canvas: the upscaled picture's size when keep_input_size, else scale × the request's size.
 */
export async function tiledDiffusionInit(image: RgbImage, request: NonNullable<TiledDiffusionRequest['upscale']>, width: number, height: number): Promise<{ image: RgbImage; width: number; height: number }> {
  if (request.upscaler === 'none') return { image, width: request.keepInputSize ? image.width - (image.width % 8) : width, height: request.keepInputSize ? image.height - (image.height % 8) : height };
  const up = await upscaleImage(image, request.scale, lanczosUpscale);
  return request.keepInputSize ? { image: up, width: up.width, height: up.height } : { image: up, width: Math.trunc(request.scale * width), height: Math.trunc(request.scale * height) };
}
