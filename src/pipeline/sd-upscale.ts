/**
 * AUTOMATIC1111's "SD upscale" script (scripts/sd_upscale.py, v1.10): enlarge the picture with an
 * upscaler (A1111's Upscaler.upscale: the target is the scaled size rounded down to a multiple of
 * 8), cut it into overlapping tiles of the request's size (images.split_grid), redraw each tile
 * as image-to-image with the prompt, and join the tiles with linear feathers across the overlaps
 * (images.combine_grid: Pillow's masked paste, 8-bit). Seeds: A1111 redraws `batchSize` tiles per
 * batch, each with seed + its place in the batch, and adds 1 to the seed after every batch
 * (tile i of batch size 1: seed + i); each upscale of a batch count starts at seed + n.
 *
 * Optionally a seam fix after it, Ultimate SD upscale's "band pass": a band across each seam is
 * redrawn as inpainting with a mask that rises linearly from its edges to its middle.
 */
import { resample } from '../image/resample.js';
import type { RgbImage } from '../io/png.js';
import { checkRgbImage, fitImage } from './img2img.js';
import { sdUpscaleFields } from './tiled-infotext.js';
import type { GenerateCallbacks, GenerateOptions, GenerateResult } from './stable-diffusion.js';

/** The built-in upscalers, in the order of A1111's list (None, Lanczos, …): the script's upscaler_index counts in it. */
export const SD_UPSCALERS = ['none', 'lanczos'] as const;
export type SdUpscalerName = (typeof SD_UPSCALERS)[number];

/** An upscaler: the picture enlarged by about `scale` (a model may give more; A1111 then resizes to the target with Lanczos). */
export type UpscaleFn = (image: RgbImage, scale: number) => RgbImage | Promise<RgbImage>;

/** A1111's names. */
export const A1111_SD_UPSCALERS: Record<SdUpscalerName, string> = { none: 'None', lanczos: 'Lanczos' };

export interface SeamFixOptions {
  /** Ultimate SD upscale's band pass (the only mode here). */
  mode: 'band';
  /** Band width across the seam, px (default 64). */
  width?: number;
  /** Context around the band given to the model, px (default 16). */
  padding?: number;
  /** Strength of the band's redraw (default 0.35). */
  denoise?: number;
}

export interface SdUpscaleOptions {
  /** How much larger the picture gets (A1111's scale_factor). */
  scale: number;
  /** Pixels shared by neighbouring tiles, feathered (default 64). */
  overlap?: number;
  /** A built-in upscaler by name (default lanczos), or another one with its name for the infotext. */
  upscaler?: SdUpscalerName | { name: string; upscale: UpscaleFn };
  /** A1111's batch size: tiles per batch, which sets the tile seeds (tiles run one at a time here; default 1). */
  batchSize?: number;
  seamFix?: SeamFixOptions;
}

/** The settings of an SD upscale as it ran. */
export interface SdUpscaleSettings {
  scale: number;
  overlap: number;
  upscaler: string;
  batchSize: number;
  /** The upscaled picture's size and the tile grid. */
  width: number;
  height: number;
  tiles: number;
  seamFix?: Required<SeamFixOptions>;
}

function fail(msg: string): never {
  throw new Error(msg);
}

/** A1111's Upscaler.upscale: the target is ⌊size · scale / 8⌋ · 8; the upscaler's result is resized to it with Lanczos if it differs. */
export async function upscaleImage(image: RgbImage, scale: number, upscale: UpscaleFn): Promise<RgbImage> {
  const [width, height] = upscaledSize(image, scale);
  return fitImage(await upscale(image, scale), width, height);
}

function upscaledSize(image: RgbImage, scale: number): [number, number] {
  return [Math.floor((image.width * scale) / 8) * 8, Math.floor((image.height * scale) / 8) * 8];
}

/** UpscalerLanczos.do_upscale: Pillow's Lanczos to int(size · scale). */
export const lanczosUpscale: UpscaleFn = (image, scale) => fitImage(image, Math.trunc(image.width * scale), Math.trunc(image.height * scale));

/** One row of tiles: its top and the left of each tile. */
export interface GridRow {
  y: number;
  xs: number[];
}

/** images.split_grid: tiles spread evenly (int of the float step), the last flush with the edge. */
export function splitGrid(width: number, height: number, tileW: number, tileH: number, overlap: number): GridRow[] {
  const cols = Math.ceil((width - overlap) / (tileW - overlap));
  const rows = Math.ceil((height - overlap) / (tileH - overlap));
  const dx = cols > 1 ? (width - tileW) / (cols - 1) : 0;
  const dy = rows > 1 ? (height - tileH) / (rows - 1) : 0;
  const place = (i: number, step: number, tile: number, size: number): number => {
    const at = Math.trunc(i * step);
    return at + tile >= size ? size - tile : at;
  };
  return Array.from({ length: rows }, (_, r) => ({ y: place(r, dy, tileH, height), xs: Array.from({ length: cols }, (_, c) => place(c, dx, tileW, width)) }));
}

export function cropImage(img: RgbImage, x: number, y: number, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let r = 0; r < height; r++) data.set(img.data.subarray(((y + r) * img.width + x) * 3, ((y + r) * img.width + x + width) * 3), r * width * 3);
  return { width, height, data };
}

/**
 * Pillow's Image.paste(src, (x, y), mask): each byte becomes (dst·(255 − m) + src·m) / 255 rounded
 * the way Pillow's BLEND macro does; without a mask a plain copy.
 */
function paste(dst: RgbImage, src: RgbImage, x: number, y: number, mask?: (col: number, row: number) => number): void {
  for (let r = 0; r < src.height; r++) {
    for (let c = 0; c < src.width; c++) {
      const d = ((y + r) * dst.width + x + c) * 3;
      const s = (r * src.width + c) * 3;
      const m = mask?.(c, r) ?? 255;
      for (let k = 0; k < 3; k++) {
        const t = dst.data[d + k]! * (255 - m) + src.data[s + k]! * m + 128;
        dst.data[d + k] = ((t >> 8) + t) >> 8;
      }
    }
  }
}

/** images.combine_grid: each tile over the last across `overlap` pixels with a mask rising ⌊i · 255 / overlap⌋, rows likewise. */
export function combineGrid(grid: readonly GridRow[], tiles: readonly RgbImage[], width: number, height: number, overlap: number): RgbImage {
  const ramp = (i: number): number => Math.floor((i * 255) / overlap);
  const out: RgbImage = { width, height, data: new Uint8Array(width * height * 3) };
  let t = 0;
  for (const { y, xs } of grid) {
    const h = tiles[t]!.height;
    const row: RgbImage = { width, height: h, data: new Uint8Array(width * h * 3) };
    for (const x of xs) {
      const tile = tiles[t++]!;
      if (x === 0) {
        paste(row, tile, 0, 0);
        continue;
      }
      paste(row, cropImage(tile, 0, 0, overlap, h), x, 0, (c) => ramp(c));
      paste(row, cropImage(tile, overlap, 0, tile.width - overlap, h), x + overlap, 0);
    }
    if (y === 0) {
      paste(out, row, 0, 0);
      continue;
    }
    paste(out, cropImage(row, 0, 0, width, overlap), 0, y, (_, r) => ramp(r));
    paste(out, cropImage(row, 0, overlap, width, h - overlap), 0, y + overlap);
  }
  return out;
}

/** The seed of tile `index` (row by row) in A1111's batches of `batchSize`: seed + batch index + place in the batch. */
export function tileSeed(seed: number, index: number, batchSize: number): number {
  return seed + Math.floor(index / batchSize) + (index % batchSize);
}

/**
 * Ultimate SD upscale's band mask across `width` pixels: Pillow's linear gradient (0 … 255) shrunk
 * to 128 rows with bicubic, its 180° turn below it (a rise and a fall), shrunk to `width` with bicubic.
 */
export function bandProfile(width: number): Uint8Array {
  const half = (from: (i: number) => number): Uint8Array => resample({ width: 1, height: 256, channels: 1, data: Uint8Array.from({ length: 256 }, (_, i) => from(i)) }, 1, 128, 'bicubic').data;
  const mirror = Uint8Array.from([...half((i) => i), ...half((i) => 255 - i)]);
  return resample({ width: 256, height: 1, channels: 1, data: mirror }, width, 1, 'bicubic').data;
}

type Run = (o: GenerateOptions, cb: GenerateCallbacks) => Promise<GenerateResult>;

interface Resolved {
  up: SdUpscaleOptions;
  tileW: number;
  tileH: number;
  overlap: number;
  batchSize: number;
  /** Undefined for A1111's None: the picture is tiled at its own size. */
  upscale?: UpscaleFn;
  upscalerName: string;
  seamFix?: Required<SeamFixOptions>;
}

/** Checks the options before any work; returns them resolved with the tile size and the upscaler. */
function resolveOptions(o: GenerateOptions, nativeSize: number): Resolved {
  const up = o.sdUpscale!;
  if (!o.initImage) fail('SD upscale enlarges a picture: give an init image (--init-image)');
  checkRgbImage(o.initImage, 'initImage');
  for (const [what, given] of [
    ['a mask', o.mask],
    ['the hires fix', o.hires],
    ['initial latents', o.latents],
    ['Tiled Diffusion', o.tiling],
  ] as const) {
    if (given) fail(`SD upscale and ${what} do not combine: drop one`);
  }
  if (typeof up.scale !== 'number' || !(up.scale >= 1 && up.scale <= 8)) fail(`SD upscale scale must be a number from 1 to 8; got ${String(up.scale)}`);
  const tileW = o.width ?? nativeSize;
  const tileH = o.height ?? nativeSize;
  for (const [name, v] of [
    ['width', tileW],
    ['height', tileH],
  ] as const) {
    if (!Number.isInteger(v) || v < 8 || v % 8 !== 0) fail(`SD upscale tile ${name} must be a positive multiple of 8 (the request's ${name} is the tile's); got ${v}`);
  }
  const overlap = up.overlap ?? 64;
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= Math.min(tileW, tileH)) fail(`SD upscale overlap must be an integer of pixels from 0 to less than the tile (${tileW}x${tileH}); got ${overlap}`);
  const batchSize = up.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 64) fail(`SD upscale batchSize must be an integer from 1 to 64; got ${batchSize}`);
  const chosen = up.upscaler ?? 'lanczos';
  let upscale: UpscaleFn | undefined;
  let upscalerName: string;
  if (typeof chosen === 'object' && chosen !== null && typeof chosen.upscale === 'function' && typeof chosen.name === 'string') {
    ({ upscale, name: upscalerName } = chosen);
  } else if (chosen === 'lanczos' || chosen === 'none') {
    upscale = chosen === 'lanczos' ? lanczosUpscale : undefined;
    upscalerName = A1111_SD_UPSCALERS[chosen];
  } else {
    fail(`unknown SD upscale upscaler ${JSON.stringify(chosen)}; use one of ${SD_UPSCALERS.join(', ')} or { name, upscale }`);
  }
  const [width, height] = upscale ? upscaledSize(o.initImage, up.scale) : [o.initImage.width, o.initImage.height];
  if (tileW > width || tileH > height) fail(`SD upscale tiles of ${tileW}x${tileH} are larger than the upscaled picture (${width}x${height}): lower the tile size (width/height) or raise the scale`);
  let seamFix: Required<SeamFixOptions> | undefined;
  if (up.seamFix) {
    const s = { mode: up.seamFix.mode, width: up.seamFix.width ?? 64, padding: up.seamFix.padding ?? 16, denoise: up.seamFix.denoise ?? 0.35 };
    if (s.mode !== 'band') fail(`SD upscale seam fix mode must be "band"; got ${JSON.stringify(s.mode)}`);
    if (!Number.isInteger(s.width) || s.width < 8 || s.width % 8 !== 0) fail(`seam fix width must be a positive multiple of 8 pixels; got ${s.width}`);
    if (!Number.isInteger(s.padding) || s.padding < 0 || s.padding % 8 !== 0) fail(`seam fix padding must be a multiple of 8 pixels (0 or more); got ${s.padding}`);
    if (typeof s.denoise !== 'number' || !(s.denoise > 0 && s.denoise <= 1)) fail(`seam fix denoise must be a number in (0, 1]; got ${s.denoise}`);
    const steps = o.steps ?? 20;
    if (Math.floor(steps * s.denoise) < 1) fail(`seam fix denoise ${s.denoise} with ${steps} steps runs no denoising step (⌊steps · denoise⌋ = 0); raise the denoise or the steps`);
    if (s.width + 2 * s.padding > Math.min(width, height)) fail(`the seam fix band (${s.width} px + 2 x ${s.padding} px padding) is wider than the upscaled picture (${width}x${height})`);
    seamFix = s;
  }
  return { up, tileW, tileH, overlap, batchSize, upscale, upscalerName, seamFix };
}

/**
 * The whole SD upscale through `run` (the pipeline's generate, called per tile without
 * `sdUpscale`). One image per upscale (`batch`: A1111's batch count, seeds seed, seed + 1, …).
 * `withFields` adds the SD upscale fields to the first tile's parameters text.
 */
export async function sdUpscale(run: Run, o: GenerateOptions, cb: GenerateCallbacks, nativeSize: number, withFields: (parameters: string, fields: [string, string | number][]) => string): Promise<GenerateResult> {
  const r = resolveOptions(o, nativeSize);
  const source = r.upscale ? await upscaleImage(o.initImage!, r.up.scale, r.upscale) : o.initImage!;
  const grid = splitGrid(source.width, source.height, r.tileW, r.tileH, r.overlap);
  const positions = grid.flatMap(({ y, xs }) => xs.map((x) => ({ x, y })));
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  const upscales = o.batch ?? 1;
  const base: GenerateOptions = { ...o, sdUpscale: undefined };
  const count = positions.length + (r.seamFix ? seamCount(grid) : 0);
  const settings: SdUpscaleSettings = { scale: r.up.scale, overlap: r.overlap, upscaler: r.upscalerName, batchSize: r.batchSize, width: source.width, height: source.height, tiles: positions.length, ...(r.seamFix && { seamFix: r.seamFix }) };
  const images: GenerateResult['images'] = [];
  const timings = { textMs: 0, denoiseMs: 0, decodeMs: 0 };
  let first: GenerateResult | undefined;
  for (let n = 0; n < upscales; n++) {
    const start = seed + n;
    let done = 0;
    const step = async (opts: Partial<GenerateOptions>): Promise<GenerateResult> => {
      const index = done++;
      const res = await run({ ...base, ...opts, batch: 1 }, { ...cb, onStep: (s) => cb.onStep?.({ ...s, tile: { index, count } }) });
      for (const k of Object.keys(timings) as (keyof typeof timings)[]) timings[k] += res.timings[k];
      return res;
    };
    const tiles: RgbImage[] = [];
    let head: GenerateResult | undefined;
    for (const [i, p] of positions.entries()) {
      const res = await step({ initImage: cropImage(source, p.x, p.y, r.tileW, r.tileH), width: r.tileW, height: r.tileH, seed: tileSeed(start, i, r.batchSize) });
      head ??= res;
      tiles.push(res.images[0]!);
    }
    let image = combineGrid(grid, tiles, source.width, source.height, r.overlap);
    if (r.seamFix) image = await bandPass(image, grid, r.overlap, r.seamFix, (initImage, mask) => step({ initImage, mask: { image: mask, blur: 0 }, width: initImage.width, height: initImage.height, strength: r.seamFix!.denoise, seed: start }));
    first ??= head;
    images.push({ ...image, seed: start, parameters: withFields(head!.images[0]!.parameters, sdUpscaleFields(settings)) });
  }
  return { images, settings: { ...first!.settings, seed, batch: upscales, initImage: { width: o.initImage!.width, height: o.initImage!.height }, sdUpscale: settings }, timings };
}

/** The seams the band pass redraws: one per pair of neighbouring columns, one per pair of rows. */
function seamCount(grid: readonly GridRow[]): number {
  return grid[0]!.xs.length - 1 + grid.length - 1;
}

/**
 * Ultimate SD upscale's band pass on this grid: a band `width` wide across the middle of each
 * overlap, columns first, then rows, each redrawn over its full length as inpainting of the band
 * with `padding` pixels of context on both sides (moved inside the picture at its edges).
 */
async function bandPass(
  image: RgbImage,
  grid: readonly GridRow[],
  overlap: number,
  fix: Required<SeamFixOptions>,
  redraw: (crop: RgbImage, mask: RgbImage) => Promise<GenerateResult>,
): Promise<RgbImage> {
  const profile = bandProfile(fix.width);
  const span = fix.width + 2 * fix.padding;
  // combine_grid feathers over the first `overlap` pixels of each tile after the first.
  const centres = (starts: readonly number[]): number[] => starts.slice(1).map((s) => s + Math.floor(overlap / 2));
  let out = image;
  for (const [vertical, cs] of [
    [true, centres(grid[0]!.xs)],
    [false, centres(grid.map((r) => r.y))],
  ] as const) {
    for (const c of cs) {
      const size = vertical ? out.width : out.height;
      const from = Math.min(Math.max(0, c - fix.width / 2 - fix.padding), size - span);
      const band = c - fix.width / 2 - from;
      const [x, y, w, h] = vertical ? [from, 0, span, out.height] : [0, from, out.width, span];
      const mask: RgbImage = { width: w, height: h, data: new Uint8Array(w * h * 3) };
      for (let p = 0; p < w * h; p++) {
        const along = vertical ? p % w : Math.floor(p / w);
        const v = along >= band && along < band + fix.width ? profile[along - band]! : 0;
        mask.data.fill(v, p * 3, p * 3 + 3);
      }
      const res = await redraw(cropImage(out, x, y, w, h), mask);
      out = { ...out, data: out.data.slice() };
      paste(out, res.images[0]!, x, y);
    }
  }
  return out;
}
