/**
 * PyTorch weights files (`.pth`, `.pt`, `.ckpt`, `.bin`) read without PyTorch and without
 * running anything: the pickle goes through the weights-only rules of torch-pickle.ts.
 *
 * Two layouts: the zip archive of `torch.save` since PyTorch 1.6 (`<name>/data.pkl`, one stored
 * entry `<name>/data/<key>` per storage, `byteorder`, `version`), and the legacy stream before it
 * (magic number, protocol version, system info, the pickled object, the list of storage keys,
 * then each storage as an int64 element count and its raw bytes). Either way every tensor is a
 * byte range of the file, validated on open, so graphs point into the file as they do into
 * safetensors. The tensors are those of the state dict: a checkpoint's `state_dict` (A1111,
 * Lightning) or `params_ema` / `params` (BasicSR, Real-ESRGAN) is taken, nested dicts are
 * flattened with dotted names, and plain top-level values (`global_step`, …) become metadata.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { ByteReader, PickleError, PyDict, PyTuple, unpickle } from './pickle.js';
import { DTYPE_BYTES, numelOf, TensorFile, type TensorInfo } from './tensor-file.js';
import { int, storageType, TorchStorage, TorchTensor, torchPolicy, Unusable, type StorageLoader } from './torch-pickle.js';
import { ZipArchive } from './zip.js';
import { UserError } from '../errors.js';

export class TorchFileError extends UserError {
  constructor(file: string, message: string) {
    super(`${basename(file)}: ${message} (file: ${file})`);
    this.name = 'TorchFileError';
  }
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

/** Opcodes a pickle can begin with: PROTO, FRAME, MARK, GLOBAL, INST, the empty containers and plain values. */
const PICKLE_STARTS = [0x80, 0x95, ...Buffer.from('(ci}])NIJKLFGSTUVXBC')];

/** Wrappers around a state dict, in the order AUTOMATIC1111 and spandrel unwrap them. */
const STATE_DICT_KEYS = ['state_dict', 'params_ema', 'params-ema', 'params', 'model', 'net'];

/** Where each storage's bytes start in the file, by storage key. */
type StorageOffsets = Map<string, number>;

export class TorchFile extends TensorFile {
  private constructor(
    path: string,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
    readonly format: 'zip' | 'legacy',
    /** Tensors in the file that todo-sd cannot use (quantized, sparse, complex, …): name → what they are. */
    readonly unusable: ReadonlyMap<string, string>,
  ) {
    super(path, tensors, metadata);
  }

  protected error(message: string): Error {
    return new TorchFileError(this.path, message);
  }

  override has(name: string): boolean {
    return super.has(name) || this.unusable.has(name);
  }

  override info(name: string): TensorInfo {
    const what = this.unusable.get(name);
    if (what) throw this.error(`tensor "${name}" is ${what}, which todo-sd cannot use as a weight`);
    return super.info(name);
  }

  static open(path: string): TorchFile {
    const fail = (message: string): Error => new TorchFileError(path, message);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw fail(code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(e)})`);
    }
    try {
      const size = fstatSync(fd).size;
      const head = Buffer.alloc(Math.min(size, 512));
      readSync(fd, head, 0, head.length, 0);
      if (head.length >= 4 && head.readUInt32LE(0) === 0x04034b50) return TorchFile.fromZip(path, fail);
      if (head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar') {
        throw fail("this is PyTorch's tar format from before version 0.4, which todo-sd does not read; load and save it once with a newer PyTorch");
      }
      // A pickle starts with PROTO (protocol 2 and up) or, in protocols 0 and 1, with a MARK or a value.
      if (size > 0 && PICKLE_STARTS.includes(head[0]!)) return TorchFile.fromLegacy(path, fd, size, fail);
      throw fail(size === 0 ? 'the file is empty' : 'not a PyTorch file: neither a zip archive (torch.save since 1.6) nor a pickle stream (older torch.save)');
    } catch (e) {
      if (e instanceof PickleError) throw fail(`cannot be loaded: ${e.message}`);
      throw e;
    } finally {
      closeSync(fd);
    }
  }

  private static fromZip(path: string, fail: (m: string) => Error): TorchFile {
    const zip = ZipArchive.open(path, fail);
    const pickles = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pickles.length !== 1) {
      const names = [...zip.entries.keys()];
      if (names.some((n) => /(^|\/)(constants\.pkl|code\/)/.test(n))) {
        throw fail('this is a TorchScript archive (torch.jit.save), which holds code as well as weights; save the model\'s state_dict() with torch.save instead');
      }
      throw fail(pickles.length ? `a zip archive with ${pickles.length} data.pkl records; the file is corrupt` : `a zip archive without a data.pkl record (found ${names.slice(0, 3).join(', ') || 'nothing'}): not a PyTorch checkpoint`);
    }
    const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
    const byteorder = zip.entries.get(`${prefix}byteorder`);
    if (byteorder && zip.read(byteorder).toString('latin1').trim() === 'big') {
      throw fail('the tensors are stored big-endian (saved on a big-endian machine); load and save it once on a little-endian one');
    }
    const offsets: StorageOffsets = new Map();
    const loaded = new Map<string, TorchStorage>();
    const load: StorageLoader = ([type, key, , numel]) => {
      const k = String(key);
      const known = loaded.get(k);
      if (known) return known;
      const st = storageType(type);
      const storage = new TorchStorage(k, st, int(numel, `storage ${k}'s length`));
      const entry = zip.entries.get(`${prefix}data/${k}`);
      if (!entry) throw fail(`storage ${k} has no record data/${k} in the archive; the file is incomplete`);
      if (entry.method !== 0) throw fail(`storage ${k} is compressed inside the archive (torch.save never does that); save the file again with torch.save`);
      if (entry.size < storage.numel * st.elementSize) throw fail(`storage ${k} needs ${storage.numel * st.elementSize} bytes but its record has ${entry.size}; the file is corrupt`);
      offsets.set(k, entry.dataOffset);
      loaded.set(k, storage);
      return storage;
    };
    const root = unpickle(ByteReader.of(zip.read(zip.entries.get(pickles[0]!)!)), torchPolicy(load));
    return TorchFile.fromObject(path, root, offsets, 'zip', fail);
  }

  private static fromLegacy(path: string, fd: number, size: number, fail: (m: string) => Error): TorchFile {
    const reader = new ByteReader((pos, length) => {
      const b = Buffer.alloc(length);
      readSync(fd, b, 0, length, pos);
      return b;
    }, size);
    const header = torchPolicy(() => {
      throw new PickleError('a storage in the file header');
    });
    if (unpickle(reader, header) !== LEGACY_MAGIC) throw fail('a pickle without PyTorch\'s magic number: not a PyTorch weights file');
    const protocol = unpickle(reader, header);
    if (protocol !== LEGACY_PROTOCOL) throw fail(`PyTorch legacy protocol ${String(protocol)}; only ${LEGACY_PROTOCOL} exists`);
    const sys = unpickle(reader, header);
    if (sys instanceof PyDict && sys.entries.get('little_endian') === false) {
      throw fail('the tensors are stored big-endian (saved on a big-endian machine); load and save it once on a little-endian one');
    }
    const roots = new Map<string, TorchStorage>();
    const load: StorageLoader = ([type, rootKey, , numel, view]) => {
      const k = String(rootKey);
      let root = roots.get(k);
      if (!root) {
        root = new TorchStorage(k, storageType(type), int(numel, `storage ${k}'s length`));
        roots.set(k, root);
      }
      if (!(view instanceof PyTuple)) return root;
      const [, offset, viewSize] = view.items;
      return new TorchStorage(k, root.type, int(viewSize, 'a storage view length'), int(offset, 'a storage view offset'));
    };
    const root = unpickle(reader, torchPolicy(load));
    const keys = unpickle(reader, header);
    if (!Array.isArray(keys)) throw fail('the list of storage keys after the pickled object is missing; the file is corrupt');
    // The storages follow in the order of that list: an int64 element count, then the bytes.
    const offsets: StorageOffsets = new Map();
    let pos = reader.pos;
    for (const key of keys) {
      const storage = roots.get(String(key));
      if (!storage) throw fail(`the storage list names ${String(key)}, which no tensor uses; the file is corrupt`);
      const count = Buffer.alloc(8);
      if (pos + 8 > size) throw fail(`storage ${storage.key} starts at byte ${pos} but the file has ${size}; the file is truncated`);
      readSync(fd, count, 0, 8, pos);
      if (count.readBigInt64LE(0) !== BigInt(storage.numel)) throw fail(`storage ${storage.key} holds ${count.readBigInt64LE(0)} elements where ${storage.numel} were announced; the file is corrupt`);
      offsets.set(storage.key, pos + 8);
      pos += 8 + storage.numel * storage.type.elementSize;
      if (pos > size) throw fail(`storage ${storage.key} ends at byte ${pos} but the file has ${size}; the file is truncated`);
    }
    return TorchFile.fromObject(path, root, offsets, 'legacy', fail);
  }

  private static fromObject(path: string, root: unknown, offsets: StorageOffsets, format: 'zip' | 'legacy', fail: (m: string) => Error): TorchFile {
    if (!(root instanceof PyDict)) {
      throw fail(`the file holds ${root instanceof TorchTensor ? 'a single tensor' : 'no dict'}; a weights file holds a dict of named tensors (a state_dict)`);
    }
    const metadata: Record<string, string> = {};
    for (const [k, v] of root.entries) {
      if (typeof k === 'string' && ['string', 'number', 'bigint', 'boolean'].includes(typeof v)) metadata[k] = String(v);
    }
    const wrapped = STATE_DICT_KEYS.map((k) => root.entries.get(k)).find((v) => v instanceof PyDict);
    const tensors = new Map<string, TensorInfo>();
    const unusable = new Map<string, string>();
    const walk = (d: PyDict, prefix: string): void => {
      for (const [k, v] of d.entries) {
        if (typeof k !== 'string' && typeof k !== 'number') continue;
        const name = `${prefix}${k}`;
        if (v instanceof PyDict) walk(v, `${name}.`);
        else if (v instanceof Unusable) unusable.set(name, v.what);
        else if (v instanceof TorchTensor) {
          const info = tensorInfo(name, v, offsets, fail);
          if (typeof info === 'string') unusable.set(name, info);
          else tensors.set(name, info);
        }
      }
    };
    walk((wrapped as PyDict | undefined) ?? root, '');
    return new TorchFile(path, tensors, metadata, format, unusable);
  }
}

/** Where a tensor's values lie in the file, checked against its storage; a string says why it cannot be used. */
function tensorInfo(name: string, t: TorchTensor, offsets: StorageOffsets, fail: (m: string) => Error): TensorInfo | string {
  const s = t.storage;
  if (!s) return 'a tensor without a storage';
  if (t.unreadableDtype) return `of dtype ${t.unreadableDtype}`;
  const dtype = t.dtype ?? s.type.dtype;
  if (!dtype) return `stored as ${s.type.name}`;
  const el = DTYPE_BYTES[dtype];
  const n = numelOf(t.shape);
  const span = n === 0 ? 0 : t.shape.reduce((a, d, i) => a + (d - 1) * t.strides[i]!, 0) + 1;
  const storageBytes = s.numel * s.type.elementSize;
  if ((t.offset + span) * el > storageBytes) {
    throw fail(`tensor "${name}" [${t.shape.join(', ')}] reaches past the end of its storage ${s.key} (${storageBytes} bytes); the file is corrupt`);
  }
  const start = offsets.get(s.key);
  if (start === undefined) throw fail(`tensor "${name}": its storage ${s.key} has no data in the file; the file is corrupt`);
  let expected = 1;
  let contiguous = true;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    if (t.shape[i]! !== 1 && t.strides[i] !== expected) contiguous = false;
    expected *= t.shape[i]!;
  }
  const info: TensorInfo = { name, dtype, shape: t.shape, offset: start + s.elementOffset * s.type.elementSize + t.offset * el, byteLength: n * el };
  return contiguous || n === 0 ? info : { ...info, strides: t.strides };
}
