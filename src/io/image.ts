/**
 * Reading pictures: PNG, JPEG, WebP, GIF (first frame) and AVIF bytes → 8-bit RGB plus the alpha
 * plane when there is one, decoded by libvips (sharp, prebuilt from the npm registry). As
 * AUTOMATIC1111 reads them with Pillow: EXIF orientation applied (`ImageOps.exif_transpose`),
 * grey replicated, palettes expanded, 16-bit samples cut to their high byte, embedded ICC profiles
 * not applied. TIFF, HEIC, SVG and the other formats libvips knows are refused by name: the inputs
 * here are photographs and drawings in the formats browsers and cameras send, and every decoder
 * left out is one less reached by untrusted bytes on the server. readImageText reads the
 * generation parameters a picture carries: PNG text chunks, or the EXIF UserComment of a JPEG or
 * WebP (A1111's `samples_format` jpg / webp).
 */
import exifReader from 'exif-reader';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { UserError } from '../errors.js';
import { readPngText, type RgbImage } from './png.js';

export interface DecodedImage extends RgbImage {
  /** The alpha plane (255 = opaque), when the image has one. */
  alpha?: Uint8Array;
}

export interface DecodeOptions {
  /** Names the image in errors ("--init-image photo.jpg", "init_images.0"). */
  what?: string;
  /** Larger images are refused before they are decoded. */
  maxPixels?: number;
}

/** sharp's format names of the images read, with how errors name them. */
const READABLE: Record<string, string> = { png: 'PNG', jpeg: 'JPEG', webp: 'WebP', gif: 'GIF', avif: 'AVIF' };

/** The format a file's first bytes announce, to name a damaged file in errors. */
function announced(b: Uint8Array): string | undefined {
  const ascii = (from: number, to: number): string => String.fromCharCode(...b.subarray(from, to));
  if (b[0] === 0x89 && ascii(1, 4) === 'PNG') return 'PNG';
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'JPEG';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'WebP';
  if (ascii(0, 4) === 'GIF8') return 'GIF';
  return undefined;
}

/** The default size limit: libvips' own (0x3FFF²), well past any image a model is run on. */
const DEFAULT_MAX_PIXELS = 0x3fff * 0x3fff;

/** The image format's name, or a refusal naming it. */
function formatOf(meta: Metadata, what: string): string {
  // AVIF and HEIC share the HEIF container; the prebuilt libvips decodes AV1 only.
  const format = meta.format === 'heif' ? (meta.compression === 'av1' ? 'avif' : 'heic') : meta.format;
  const name = READABLE[format];
  if (name === undefined) {
    throw new UserError(`${what} is a ${format.toUpperCase()} image; todo-sd reads ${Object.values(READABLE).join(', ')}: convert it to PNG or JPEG first`);
  }
  return name;
}

function damaged(what: string, name: string, e: unknown): UserError {
  return new UserError(`${what} is a damaged ${name} file (${(e as Error).message.split('\n')[0]}); re-save it`);
}

/** The picture's header (no pixels decoded) and its format's name; anything else is a UserError. */
async function probe(bytes: Uint8Array, what: string): Promise<{ meta: Metadata; name: string }> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes).metadata();
  } catch (e) {
    const name = announced(bytes);
    if (name) throw damaged(what, name, e);
    throw new UserError(`${what} is not a readable image (${(e as Error).message.split('\n')[0]}); give a PNG, JPEG or WebP file`);
  }
  return { meta, name: formatOf(meta, what) };
}

/** Decodes a picture; bad, truncated, unsupported or oversized input is a UserError naming the problem. */
export async function decodeImage(bytes: Uint8Array, options: DecodeOptions = {}): Promise<DecodedImage> {
  const what = options.what ?? 'the image';
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const { meta, name } = await probe(bytes, what);
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w * h > maxPixels) throw new UserError(`${what} is ${w}x${h} pixels, more than the ${maxPixels.toLocaleString('en-US')} allowed; scale it down first`);
  let raw: { data: Buffer; info: OutputInfo };
  try {
    // failOn 'warning' (sharp's default) also refuses truncated and damaged data.
    raw = await sharp(bytes, { ignoreIcc: true, limitInputPixels: maxPixels }).autoOrient().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw damaged(what, name, e);
  }
  return toRgb(raw.data, raw.info);
}

/**
 * EXIF UserComment by its 8-byte charset code: `UNICODE` is UTF-16 big-endian (piexif's, as A1111
 * writes JPEG and WebP parameters); `ASCII` and the rest are read as UTF-8, which ASCII is too.
 */
function userComment(raw: Uint8Array): string {
  const code = Buffer.from(raw.subarray(0, 8)).toString('latin1');
  const body = Buffer.from(raw.subarray(8));
  const text = code === 'UNICODE\0' ? new TextDecoder('utf-16be').decode(body) : body.toString('utf8');
  return text.replace(/\0+$/, '');
}

/**
 * The text a picture carries, as A1111's `read_info_from_image`: a PNG's text chunks, a JPEG's or
 * WebP's EXIF UserComment as `parameters`.
 */
export async function readImageText(bytes: Uint8Array, options: DecodeOptions = {}): Promise<Record<string, string>> {
  const what = options.what ?? 'the image';
  const { meta, name } = await probe(bytes, what);
  if (name === 'PNG') {
    try {
      return readPngText(bytes);
    } catch (e) {
      throw damaged(what, name, e);
    }
  }
  let comment: unknown;
  try {
    comment = meta.exif && exifReader(meta.exif).Photo?.UserComment;
  } catch {
    // Damaged EXIF carries no parameters (A1111's piexif gives up on it too).
  }
  return comment instanceof Uint8Array ? { parameters: userComment(comment) } : {};
}

/** Interleaved 8-bit samples (grey, grey + alpha, RGB or RGBA) → RGB and an alpha plane. */
function toRgb(src: Uint8Array, info: OutputInfo): DecodedImage {
  const { width, height, channels } = info;
  const n = width * height;
  const grey = channels <= 2;
  const hasAlpha = channels === 2 || channels === 4;
  const data = new Uint8Array(n * 3);
  const alpha = hasAlpha ? new Uint8Array(n) : undefined;
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) data[p * 3 + c] = src[p * channels + (grey ? 0 : c)]!;
    if (alpha) alpha[p] = src[p * channels + channels - 1]!;
  }
  return { width, height, data, ...(alpha ? { alpha } : {}) };
}
