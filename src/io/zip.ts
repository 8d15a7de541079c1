/**
 * The central directory of a zip archive (zip64 included), read without loading the archive:
 * entry names, sizes, compression and where each entry's bytes start. PyTorch writes its
 * checkpoints as zip archives of stored (uncompressed) entries, so a tensor's bytes are one byte
 * range of the file, which graphs point at directly; small entries are read into memory
 * (inflated when compressed) and checked against their CRC-32.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** Absolute offset of the entry's (compressed) bytes in the file. */
  dataOffset: number;
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function u64(b: Buffer, at: number, what: string, fail: (m: string) => Error): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`${what} is ${v}; the archive is corrupt`);
  return Number(v);
}

export class ZipArchive {
  private constructor(
    readonly path: string,
    readonly size: number,
    readonly entries: ReadonlyMap<string, ZipEntry>,
    private readonly fail: (message: string) => Error,
  ) {}

  /** `fail` makes the caller's error (naming the file) from a message. */
  static open(path: string, fail: (message: string) => Error): ZipArchive {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const read = (at: number, n: number): Buffer => {
        if (at < 0 || at + n > size) throw fail(`the zip archive points at bytes ${at}..${at + n} but the file has ${size}; it is truncated`);
        const b = Buffer.alloc(n);
        readSync(fd, b, 0, n, at);
        return b;
      };
      // The end record sits in the last 22 bytes plus an optional comment of up to 64 KiB.
      const tailLen = Math.min(size, 22 + 0xffff);
      const tail = read(size - tailLen, tailLen);
      let eocd = -1;
      for (let i = tailLen - 22; i >= 0; i--) {
        if (tail.readUInt32LE(i) === EOCD) {
          eocd = i;
          break;
        }
      }
      if (eocd < 0) throw fail('no zip end-of-archive record: the file is truncated (an interrupted download or copy) or not a zip archive');
      let count = tail.readUInt16LE(eocd + 10);
      let cdSize = tail.readUInt32LE(eocd + 12);
      let cdOffset = tail.readUInt32LE(eocd + 16);
      const eocdAbs = size - tailLen + eocd;
      if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
        const loc = read(eocdAbs - 20, 20);
        if (loc.readUInt32LE(0) !== ZIP64_LOCATOR) throw fail('a zip64 archive without its zip64 locator; the file is corrupt');
        const rec = read(u64(loc, 8, 'the zip64 record offset', fail), 56);
        if (rec.readUInt32LE(0) !== ZIP64_EOCD) throw fail('the zip64 end record is missing; the file is corrupt or truncated');
        count = u64(rec, 32, 'the entry count', fail);
        cdSize = u64(rec, 40, 'the central directory size', fail);
        cdOffset = u64(rec, 48, 'the central directory offset', fail);
      }
      const cd = read(cdOffset, cdSize);
      const entries = new Map<string, ZipEntry>();
      let p = 0;
      for (let i = 0; i < count; i++) {
        if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) throw fail(`zip central directory entry ${i} is damaged; the file is corrupt`);
        const flags = cd.readUInt16LE(p + 8);
        const method = cd.readUInt16LE(p + 10);
        const crc = cd.readUInt32LE(p + 16);
        let compressedSize = cd.readUInt32LE(p + 20);
        let entrySize = cd.readUInt32LE(p + 24);
        const nameLen = cd.readUInt16LE(p + 28);
        const extraLen = cd.readUInt16LE(p + 30);
        const commentLen = cd.readUInt16LE(p + 32);
        let local = cd.readUInt32LE(p + 42);
        const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
        // zip64 sizes and offset live in extra field 0x0001, in this order, for the fields that overflowed.
        let e = p + 46 + nameLen;
        const extraEnd = e + extraLen;
        while (e + 4 <= extraEnd) {
          const id = cd.readUInt16LE(e);
          const len = cd.readUInt16LE(e + 2);
          if (id === 0x0001) {
            let q = e + 4;
            const next = (what: string): number => {
              q += 8;
              return u64(cd, q - 8, what, fail);
            };
            if (entrySize === 0xffffffff) entrySize = next('an entry size');
            if (compressedSize === 0xffffffff) compressedSize = next('an entry size');
            if (local === 0xffffffff) local = next('an entry offset');
          }
          e += 4 + len;
        }
        if (flags & 1) throw fail(`zip entry ${name} is encrypted; weights files never are`);
        const lh = read(local, 30);
        if (lh.readUInt32LE(0) !== LOCAL) throw fail(`zip entry ${name} has no local header where the directory says; the file is corrupt`);
        const dataOffset = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
        if (dataOffset + compressedSize > size) {
          throw fail(`zip entry ${name} ends at byte ${dataOffset + compressedSize} but the file has ${size}; the file is truncated`);
        }
        entries.set(name, { name, method, compressedSize, size: entrySize, crc32: crc, dataOffset });
        p = extraEnd + commentLen;
      }
      return new ZipArchive(path, size, entries, fail);
    } finally {
      closeSync(fd);
    }
  }

  /** One entry's contents, inflated if compressed and checked against its CRC-32. */
  read(entry: ZipEntry): Buffer {
    if (entry.method !== 0 && entry.method !== 8) throw this.fail(`zip entry ${entry.name} uses compression method ${entry.method}; only stored and deflated entries are read`);
    const fd = openSync(this.path, 'r');
    let raw: Buffer;
    try {
      raw = Buffer.alloc(entry.compressedSize);
      readSync(fd, raw, 0, raw.length, entry.dataOffset);
    } finally {
      closeSync(fd);
    }
    let data: Buffer;
    try {
      data = entry.method === 8 ? inflateRawSync(raw) : raw;
    } catch (e) {
      throw this.fail(`zip entry ${entry.name} does not inflate (${(e as Error).message}); the file is corrupt`);
    }
    // PyTorch can be told not to compute CRCs (torch.serialization.set_crc32_options(False)): it writes 0 then.
    if (data.length !== entry.size || (entry.crc32 !== 0 && crc32(data) !== entry.crc32)) throw this.fail(`zip entry ${entry.name} fails its CRC-32 check; the file is corrupt`);
    return data;
  }
}
