/**
 * The tiled methods in the PNG `parameters` text, under the keys AUTOMATIC1111's extensions write:
 * MultiDiffusion as the Tiled Diffusion extension (multidiffusion-upscaler-for-automatic1111:
 * `Tiled Diffusion: {"Method": "MultiDiffusion", "Tile tile width": 96, …}`, a dict that A1111
 * writes with json.dumps; tile sizes and overlap in latent pixels), and SD upscale as A1111's
 * own script (`SD upscale overlap`, `SD upscale upscaler`; the scale, which A1111 does not
 * write, as `SD upscale scale`).
 */
import type { Tiling, TilingOptions } from './multidiffusion.js';
import { A1111_SD_UPSCALERS, type SdUpscaleOptions, type SdUpscaleSettings } from './sd-upscale.js';

export const TILED_DIFFUSION_KEY = 'Tiled Diffusion';

/** The extension's method names; only MultiDiffusion is implemented. */
const MULTIDIFFUSION = 'MultiDiffusion';

/** Python's json.dumps of a flat dict (", " and ": " separators), as A1111 writes a dict value. */
function pythonJson(o: Record<string, string | number | boolean>): string {
  return `{${Object.entries(o)
    .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(', ')}}`;
}

/** The `Tiled Diffusion` value: the extension's keys (overlap = window − stride), and `Circular` when on (ours; the extension ignores it). */
export function tilingInfotext(t: Tiling): string {
  return pythonJson({
    Method: MULTIDIFFUSION,
    'Tile tile width': t.window,
    'Tile tile height': t.window,
    'Tile Overlap': t.window - t.stride,
    'Tile batch size': t.viewBatch,
    ...(t.circular && { Circular: true }),
  });
}

/**
 * Tiling options from a `Tiled Diffusion` value, or undefined without one; throws on what
 * cannot be applied (another method, unequal tile sides).
 */
export function tilingFromInfotext(fields: Readonly<Record<string, string>>): TilingOptions | undefined {
  const raw = fields[TILED_DIFFUSION_KEY];
  if (raw === undefined) return undefined;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw new Error(`infotext: "${TILED_DIFFUSION_KEY}: ${raw}" is not the extension's JSON object`);
  }
  const method = o.Method ?? MULTIDIFFUSION;
  if (method !== MULTIDIFFUSION) throw new Error(`infotext: Tiled Diffusion method "${String(method)}" is not offered here (only ${MULTIDIFFUSION})`);
  const int = (key: string, def: number): number => {
    const v = o[key] ?? def;
    if (!Number.isInteger(v)) throw new Error(`infotext: Tiled Diffusion "${key}: ${String(v)}" is not an integer`);
    return v as number;
  };
  const tileWidth = int('Tile tile width', 96);
  return { ...tilingFromExtension({ tileWidth, tileHeight: int('Tile tile height', tileWidth), overlap: int('Tile Overlap', 48), batchSize: int('Tile batch size', 1) }), circular: o.Circular === true };
}

/**
 * The extension's tile settings (latent pixels) as tiling options: stride = tile − overlap, with
 * its rule for an overlap at least as large as the tile (overlap = tile − 4). Tiles must be square.
 */
export function tilingFromExtension(e: { tileWidth: number; tileHeight: number; overlap: number; batchSize: number }): TilingOptions {
  if (e.tileWidth !== e.tileHeight) throw new Error(`infotext: Tiled Diffusion tiles of ${e.tileWidth}x${e.tileHeight} latent pixels; only square tiles are offered here`);
  return { window: e.tileWidth, stride: e.overlap >= e.tileWidth ? 4 : e.tileWidth - e.overlap, viewBatch: e.batchSize };
}

/** The fields of an SD upscale: A1111's keys, then the scale, A1111's batch size (it sets the tile seeds) and the seam fix (ours). */
export function sdUpscaleFields(s: SdUpscaleSettings): [string, string | number][] {
  const fields: [string, string | number][] = [
    ['SD upscale overlap', s.overlap],
    ['SD upscale upscaler', s.upscaler],
    ['SD upscale scale', s.scale],
  ];
  if (s.batchSize > 1) fields.push(['SD upscale batch size', s.batchSize]);
  if (s.seamFix) fields.push(['SD upscale seam fix', 'Band pass'], ['SD upscale seam fix width', s.seamFix.width], ['SD upscale seam fix padding', s.seamFix.padding], ['SD upscale seam fix denoise', s.seamFix.denoise]);
  return fields;
}


const SD_UPSCALE = 'SD upscale ';

/**
 * SD upscale options from infotext fields: undefined without `SD upscale overlap`; `missing`
 * names what cannot be applied (A1111 does not write the scale; an upscaler not offered here).
 */
export function sdUpscaleFromInfotext(fields: Readonly<Record<string, string>>): { options?: SdUpscaleOptions; missing?: string } | undefined {
  if (!(`${SD_UPSCALE}overlap` in fields)) return undefined;
  const num = (key: string): number | undefined => {
    const raw = fields[SD_UPSCALE + key];
    if (raw === undefined) return undefined;
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v)) throw new Error(`infotext: "${SD_UPSCALE}${key}: ${raw}" is not a number`);
    return v;
  };
  const name = fields[`${SD_UPSCALE}upscaler`] ?? 'None';
  const upscaler = (Object.keys(A1111_SD_UPSCALERS) as (keyof typeof A1111_SD_UPSCALERS)[]).find((k) => A1111_SD_UPSCALERS[k].toLowerCase() === name.toLowerCase());
  if (!upscaler) return { missing: `upscaler "${name}" is not offered here (${Object.values(A1111_SD_UPSCALERS).join(', ')})` };
  const scale = num('scale');
  if (scale === undefined) return { missing: 'A1111 does not record the scale: give it again' };
  const seamFix = fields[`${SD_UPSCALE}seam fix`] === undefined ? undefined : { mode: 'band' as const, width: num('seam fix width'), padding: num('seam fix padding'), denoise: num('seam fix denoise') };
  return { options: { scale, overlap: num('overlap'), upscaler, batchSize: num('batch size'), ...(seamFix && { seamFix }) } };
}

/** Every key an SD upscale writes. */
export function isSdUpscaleKey(key: string): boolean {
  return key.startsWith(SD_UPSCALE);
}
