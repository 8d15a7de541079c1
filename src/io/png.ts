/**
 * PNG output: fast-png encodes, and a text chunk carries the generation parameters. Latin-1 text
 * goes in a tEXt chunk; anything else (a prompt with emoji or CJK) in an iTXt chunk, UTF-8, as
 * PIL and AUTOMATIC1111 do, so other tools read the parameters back either way.
 */
import { convertIndexedToRgb, decode, encode, hasPngSignature } from 'fast-png';
import { crc32 } from 'node:zlib';

export interface RgbImage {
  width: number;
  height: number;
  /** Row-major RGB, 3 bytes per pixel. */
  data: Uint8Array;
}

const isLatin1 = (s: string): boolean => [...s].every((ch) => ch.charCodeAt(0) <= 0xff);

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'latin1');
  out.set(body, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

/** keyword \0 compression-flag(0) method(0) language-tag \0 translated-keyword \0 text */
function iTXt(keyword: string, text: string): Uint8Array {
  return chunk('iTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

export function encodePng(img: RgbImage, text: Record<string, string> = {}): Uint8Array {
  const latin = Object.fromEntries(Object.entries(text).filter(([, v]) => isLatin1(v)));
  const png = encode({ width: img.width, height: img.height, data: img.data, channels: 3, depth: 8, text: latin });
  const rest = Object.entries(text).filter(([, v]) => !isLatin1(v));
  if (rest.length === 0) return png;
  const iend = png.length - 12;
  return Buffer.concat([png.subarray(0, iend), ...rest.map(([k, v]) => iTXt(k, v)), png.subarray(iend)]);
}

/** Text chunks of a PNG (tEXt and uncompressed iTXt). */
export function readPngText(bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = { ...decode(bytes).text };
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let p = 8; p + 12 <= buf.length; ) {
    const len = buf.readUInt32BE(p);
    if (buf.toString('latin1', p + 4, p + 8) === 'iTXt') {
      const body = buf.subarray(p + 8, p + 8 + len);
      const k = body.indexOf(0);
      if (body[k + 1] === 0) {
        let q = body.indexOf(0, k + 3);
        q = body.indexOf(0, q + 1);
        out[body.toString('latin1', 0, k)] = body.toString('utf8', q + 1);
      }
    }
    p += 12 + len;
  }
  return out;
}

/**
 * A PNG file as 8-bit RGB, whatever its colour type: grey replicated, alpha dropped and palettes
 * expanded (Pillow's `convert('RGB')`), 16-bit samples cut to their high byte (as Pillow reads them).
 * Also returns the alpha channel when there is one. `what` names the file in errors.
 */
export function decodePngRgb(bytes: Uint8Array, what: string): RgbImage & { alpha?: Uint8Array } {
  if (!hasPngSignature(bytes)) throw new Error(`${what} is not a PNG file; convert it to PNG first`);
  let png;
  try {
    png = decode(bytes);
  } catch (e) {
    throw new Error(`${what} is not a readable PNG (${e instanceof Error ? e.message : String(e)}); re-save it as PNG`);
  }
  const n = png.width * png.height;
  let src: ArrayLike<number> = png.data;
  let channels = png.channels;
  if (png.palette) {
    src = convertIndexedToRgb(png);
    channels = png.palette[0]?.length ?? 3;
  }
  const shift = png.depth === 16 ? 8 : 0;
  const grey = channels <= 2;
  const hasAlpha = channels === 2 || channels === 4;
  const data = new Uint8Array(n * 3);
  const alpha = hasAlpha ? new Uint8Array(n) : undefined;
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) data[p * 3 + c] = src[p * channels + (grey ? 0 : c)]! >> shift;
    if (alpha) alpha[p] = src[p * channels + channels - 1]! >> shift;
  }
  return { width: png.width, height: png.height, data, ...(alpha ? { alpha } : {}) };
}
