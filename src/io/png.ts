/**
 * PNG output: fast-png encodes, and a text chunk carries the generation parameters. Latin-1 text
 * goes in a tEXt chunk; anything else (a prompt with emoji or CJK) in an iTXt chunk, UTF-8, as
 * PIL and AUTOMATIC1111 do, so other tools read the parameters back either way.
 */
import { decode, encode } from 'fast-png';
import { crc32 } from 'node:zlib';

export interface RgbImage {
  width: number;
  height: number;
  /** Row-major RGB, 3 bytes per pixel. */
  data: Uint8Array;
}

const isLatin1 = (s: string): boolean => [...s].every((ch) => ch.charCodeAt(0) <= 0xff);

/** One PNG chunk: length, type, body, CRC. */
export function pngChunk(type: string, body: Uint8Array): Uint8Array {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'latin1');
  out.set(body, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

/** keyword \0 compression-flag(0) method(0) language-tag \0 translated-keyword \0 text */
function iTXt(keyword: string, text: string): Uint8Array {
  return pngChunk('iTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
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
