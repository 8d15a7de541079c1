/**
 * What a PyTorch weights pickle may build, by the rules of PyTorch's own weights-only unpickler
 * (torch/_weights_only_unpickler.py, `torch.load(weights_only=True)`): tensors rebuilt from
 * storages, storage and dtype names, torch.Size, OrderedDict / Counter, and plain values.
 * Any other global — `os.system`, `builtins.eval`, a model class — is refused by name, before
 * anything else happens; nothing here ever runs code, so refusing is the whole defence.
 *
 * Beyond PyTorch's list, the few inert classes AUTOMATIC1111's checkpoint loader (modules/safe.py)
 * accepts are read as opaque values that are never used: the pytorch_lightning ModelCheckpoint
 * that original SD 1.x `.ckpt` files carry in `callbacks`, and numpy scalars / arrays that
 * fine-tunes leave in `global_step`-like fields.
 */
import type { DType } from './tensor-file.js';
import { PickleError, PyDict, PySet, PyTuple, type UnpicklePolicy } from './pickle.js';

/** A storage as a persistent id names it; where its bytes are is the file format's business. */
export class TorchStorage {
  constructor(
    /** The storage's key in the file (zip: `data/<key>`; legacy: its root key). */
    readonly key: string,
    readonly type: StorageType,
    /** Length in elements (bytes for an untyped storage). */
    readonly numel: number,
    /** A legacy storage view starts this many elements into its root storage. */
    readonly elementOffset = 0,
  ) {}
}

/** A tensor as `_rebuild_tensor*` describes it: a strided view of a storage. */
export class TorchTensor {
  storage?: TorchStorage;
  /** In elements of the tensor's dtype. */
  offset = 0;
  shape: number[] = [];
  strides: number[] = [];
  /** Set by `_rebuild_tensor_v3` (its storage is untyped); else the storage's. */
  dtype?: DType;
  /** `_rebuild_tensor_v3`'s dtype name when todo-sd cannot read it. */
  unreadableDtype?: string;
}

/** A value PyTorch allows but todo-sd cannot turn into weights (a quantized or sparse tensor). */
export class Unusable {
  constructor(readonly what: string) {}
}

/** An inert object of a class A1111 accepts (ModelCheckpoint, numpy scalars); never looked into. */
export class Opaque {
  constructor(readonly className: string) {}
}

export class StorageType {
  constructor(
    readonly name: string,
    readonly dtype: DType | undefined,
    readonly elementSize: number,
  ) {}
}

class TorchDtype {
  constructor(
    readonly name: string,
    readonly dtype: DType | undefined,
  ) {}
}

/** A callable from the allow-list; `fn` builds the value a call would return. */
class Callable {
  constructor(
    readonly name: string,
    readonly fn: (args: unknown[]) => unknown,
  ) {}
}

/** A class object PyTorch allows as a marker (torch.Tensor, Parameter, a legacy tensor class). */
class TypeMarker {
  constructor(
    readonly name: string,
    readonly makeTensor: boolean,
  ) {}
}

class OpaqueClass {
  constructor(readonly name: string) {}
}

/** PyTorch's blocked modules: never allowed, whatever else is. */
const BLOCKED_MODULES = new Set(['sys', 'os', 'posix', 'nt']);

/** Python 2 module names, as pickle's compatibility mapping renames them. */
const PY2_MODULES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

/** Legacy storage classes: element type (undefined: one todo-sd cannot read) and element size. */
const STORAGE_TYPES: Record<string, [DType | undefined, number]> = {
  Double: ['F64', 8],
  Float: ['F32', 4],
  Half: ['F16', 2],
  BFloat16: ['BF16', 2],
  Long: ['I64', 8],
  Int: ['I32', 4],
  Short: ['I16', 2],
  Char: ['I8', 1],
  Byte: ['U8', 1],
  Bool: ['BOOL', 1],
  ComplexDouble: [undefined, 16],
  ComplexFloat: [undefined, 8],
  QUInt8: [undefined, 1],
  QInt8: [undefined, 1],
  QInt32: [undefined, 4],
  QUInt4x2: [undefined, 1],
  QUInt2x4: [undefined, 1],
};

const DTYPE_NAMES: Record<string, DType | undefined> = {
  float64: 'F64',
  double: 'F64',
  float32: 'F32',
  float: 'F32',
  float16: 'F16',
  half: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  long: 'I64',
  int32: 'I32',
  int: 'I32',
  int16: 'I16',
  short: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
  ...Object.fromEntries(
    [
      'complex32', 'chalf', 'complex64', 'cfloat', 'complex128', 'cdouble', 'uint16', 'uint32', 'uint64', 'float8_e4m3fn', 'float8_e5m2',
      'float8_e4m3fnuz', 'float8_e5m2fnuz', 'float8_e8m0fnu', 'float4_e2m1fn_x2', 'qint8', 'quint8', 'qint32', 'quint4x2', 'quint2x4',
      ...[1, 2, 3, 4, 5, 6, 7].flatMap((n) => [`uint${n}`, `int${n}`]),
    ].map((n) => [n, undefined]),
  ),
};

const TENSOR_TYPES = ['Double', 'Float', 'Half', 'BFloat16', 'Long', 'Int', 'Short', 'Char', 'Byte', 'Bool'];

export function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new PickleError(`${what} is ${describe(v)}, not a non-negative integer; the file is corrupt`);
  return v;
}

function ints(v: unknown, what: string): number[] {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : undefined;
  if (!items) throw new PickleError(`${what} is ${describe(v)}, not a tuple of integers; the file is corrupt`);
  return items.map((x, i) => int(x, `${what}[${i}]`));
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (typeof v === 'object') return `a ${v.constructor.name}`;
  return `${typeof v} ${String(v)}`;
}

/** Fills `t` from `_rebuild_tensor`'s arguments (storage, storage_offset, size, stride). */
function setTensor(t: TorchTensor, [storage, offset, size, stride]: unknown[], dtype?: TorchDtype): TorchTensor {
  if (!(storage instanceof TorchStorage)) throw new PickleError(`a tensor is rebuilt from ${describe(storage)} instead of a storage; the file is corrupt`);
  t.storage = storage;
  t.offset = int(offset, 'a tensor storage offset');
  t.shape = ints(size, 'a tensor size');
  t.strides = ints(stride, 'a tensor stride');
  if (t.strides.length !== t.shape.length) throw new PickleError(`a tensor of size [${t.shape.join(', ')}] has strides [${t.strides.join(', ')}]; the file is corrupt`);
  if (dtype) {
    t.dtype = dtype.dtype;
    if (!dtype.dtype) t.unreadableDtype = dtype.name;
  }
  return t;
}

function rebuild(args: unknown[], dtype?: unknown): TorchTensor {
  if (dtype !== undefined && !(dtype instanceof TorchDtype)) throw new PickleError(`_rebuild_tensor_v3 got ${describe(dtype)} as the dtype; the file is corrupt`);
  return setTensor(new TorchTensor(), args, dtype);
}

function dictFrom(args: unknown[]): PyDict {
  const d = new PyDict();
  const init = args[0];
  if (init instanceof PyDict) for (const [k, v] of init.entries) d.entries.set(k, v);
  else if (Array.isArray(init) || init instanceof PyTuple) {
    for (const pair of init instanceof PyTuple ? init.items : init) {
      if (!(pair instanceof PyTuple) || pair.items.length !== 2) throw new PickleError('an OrderedDict is built from something that is not a list of pairs; the file is corrupt');
      d.entries.set(pair.items[0], pair.items[1]);
    }
  }
  return d;
}

/** The allow-list: full Python name → the value the name stands for. */
function allowedGlobals(): Map<string, unknown> {
  const g = new Map<string, unknown>();
  const fn = (name: string, f: (args: unknown[]) => unknown): void => void g.set(name, new Callable(name, f));
  fn('collections.OrderedDict', dictFrom);
  fn('collections.Counter', dictFrom);
  fn('torch._utils._rebuild_tensor', (a) => rebuild(a.slice(0, 4)));
  fn('torch._utils._rebuild_tensor_v2', (a) => rebuild(a.slice(0, 4)));
  fn('torch._utils._rebuild_tensor_v3', (a) => rebuild(a.slice(0, 4), a[6]));
  fn('torch._utils._rebuild_parameter', (a) => a[0]);
  fn('torch._utils._rebuild_parameter_with_state', (a) => a[0]);
  const unusable: Record<string, string> = {
    _rebuild_qtensor: 'a quantized tensor',
    _rebuild_sparse_tensor: 'a sparse tensor',
    _rebuild_meta_tensor_no_storage: 'a meta tensor (shape only, no values)',
    _rebuild_wrapper_subclass: 'a tensor subclass',
    _rebuild_device_tensor_from_numpy: 'a tensor stored as a numpy array',
    _rebuild_device_tensor_from_cpu_tensor: 'a device tensor',
  };
  for (const [name, what] of Object.entries(unusable)) fn(`torch._utils.${name}`, () => new Unusable(what));
  g.set(
    'torch._tensor._rebuild_from_type_v2',
    new Callable('torch._tensor._rebuild_from_type_v2', ([func, , args]) => {
      if (!(func instanceof Callable)) throw new PickleError('_rebuild_from_type_v2 names no allowed rebuild function; the file is corrupt');
      return func.fn(args instanceof PyTuple ? args.items : []);
    }),
  );
  fn('torch.Size', ([dims]) => new PyTuple(ints(dims ?? new PyTuple([]), 'a torch.Size')));
  fn('torch.device', (a) => a.map(String).join(':'));
  fn('torch.serialization._get_layout', ([name]) => String(name));
  fn('_codecs.encode', ([text, encoding]) => {
    if (typeof text !== 'string') throw new PickleError('_codecs.encode of something that is no string; the file is corrupt');
    const enc = String(encoding ?? 'utf-8').toLowerCase();
    return new Uint8Array(Buffer.from(text, enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1' ? 'latin1' : 'utf8'));
  });
  fn('builtins.bytearray', ([v]) => (v instanceof Uint8Array ? v : new Uint8Array(0)));
  fn('builtins.set', ([v]) => new PySet(Array.isArray(v) ? [...v] : []));
  fn('builtins.complex', ([re, im]) => new PyTuple([re ?? 0, im ?? 0]));
  g.set('torch.Tensor', new TypeMarker('torch.Tensor', true));
  g.set('torch.nn.parameter.Parameter', new TypeMarker('torch.nn.parameter.Parameter', false));
  for (const t of TENSOR_TYPES) {
    for (const mod of ['torch', 'torch.cuda']) g.set(`${mod}.${t}Tensor`, new TypeMarker(`${mod}.${t}Tensor`, true));
  }
  for (const [t, [dtype, size]] of Object.entries(STORAGE_TYPES)) {
    for (const mod of ['torch', 'torch.cuda']) g.set(`${mod}.${t}Storage`, new StorageType(`${mod}.${t}Storage`, dtype, size));
  }
  for (const name of ['torch.UntypedStorage', 'torch.storage.UntypedStorage', 'torch.storage.TypedStorage']) g.set(name, new StorageType(name, 'U8', 1));
  for (const [name, dtype] of Object.entries(DTYPE_NAMES)) g.set(`torch.${name}`, new TorchDtype(`torch.${name}`, dtype));
  for (const q of ['per_tensor_affine', 'per_tensor_symmetric', 'per_channel_affine', 'per_channel_symmetric', 'per_channel_affine_float_qparams']) {
    g.set(`torch.${q}`, `torch.${q}`);
  }
  for (const name of [
    'pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint',
    'pytorch_lightning.callbacks.model_checkpoint',
    'numpy.core.multiarray.scalar',
    'numpy.core.multiarray._reconstruct',
    'numpy._core.multiarray.scalar',
    'numpy._core.multiarray._reconstruct',
    'numpy.dtype',
    'numpy.ndarray',
    'torch.nn.modules.container.ParameterDict',
  ]) {
    g.set(name, new OpaqueClass(name));
  }
  return g;
}

const ALLOWED = allowedGlobals();

/** The refusal of a global outside the allow-list. */
export class RefusedGlobal extends PickleError {
  constructor(readonly global: string) {
    const module = global.slice(0, global.lastIndexOf('.'));
    super(
      `the pickle asks for the Python global "${global}"${BLOCKED_MODULES.has(module) ? ` (module ${module} is always refused)` : ''}, which is no tensor, ` +
        'storage, dtype or plain container; PyTorch\'s torch.load(weights_only=True) refuses it too. Plain torch.load would run it: ' +
        'the file may be malicious, or it is a whole pickled model object rather than a state dict. Nothing in the file was run.',
    );
    this.name = 'RefusedGlobal';
  }
}

/** Turns the fields of a `('storage', …)` persistent id after 'storage' into a storage. */
export type StorageLoader = (fields: unknown[]) => TorchStorage;

/** A persistent id's storage class. */
export function storageType(v: unknown): StorageType {
  if (!(v instanceof StorageType)) throw new PickleError(`a storage's type is ${describe(v)}, not a torch storage class; the file is corrupt`);
  return v;
}

/** The unpickling policy of a PyTorch weights file; `loadStorage` is its format's persistent-id reader. */
export function torchPolicy(loadStorage: StorageLoader): UnpicklePolicy {
  return {
    global(rawModule, name) {
      const module = PY2_MODULES[rawModule] ?? rawModule;
      const full = `${module}.${name}`;
      if (BLOCKED_MODULES.has(module) || !ALLOWED.has(full)) throw new RefusedGlobal(full);
      return ALLOWED.get(full);
    },
    call(callable, args) {
      if (callable instanceof Callable) return callable.fn(args);
      if (callable instanceof TypeMarker) return callable.makeTensor ? new TorchTensor() : args[0];
      if (callable instanceof OpaqueClass) return new Opaque(callable.name);
      throw new PickleError(`the pickle calls ${describe(callable)}, which is not an allowed function; the file is corrupt or malicious`);
    },
    newObject(cls, args) {
      // Parameter(data, requires_grad): the data is the tensor.
      if (cls instanceof TypeMarker) return cls.makeTensor ? new TorchTensor() : args[0];
      if (cls instanceof Callable && (cls.name === 'collections.OrderedDict' || cls.name === 'collections.Counter')) return new PyDict();
      if (cls instanceof OpaqueClass) return new Opaque(cls.name);
      throw new PickleError(`the pickle creates an object of ${describe(cls)}, which is not an allowed class; the file is corrupt or malicious`);
    },
    build(obj, state) {
      // A legacy tensor's state is `set_`'s arguments; a Parameter's or OrderedDict's attributes are not needed.
      if (obj instanceof TorchTensor) {
        if (state instanceof PyTuple && state.items.length === 4 && state.items[0] instanceof TorchStorage) setTensor(obj, state.items);
        return;
      }
      if (obj instanceof PyDict || obj instanceof Opaque) return;
      throw new PickleError(`the pickle sets the state of ${describe(obj)}; only tensors, OrderedDicts and parameters may have one`);
    },
    persistentLoad(pid) {
      const items = pid instanceof PyTuple ? pid.items : undefined;
      const kind = items?.[0] instanceof Uint8Array ? Buffer.from(items[0]).toString('latin1') : items?.[0];
      if (!items || kind !== 'storage') throw new PickleError(`the pickle loads a persistent object ${describe(pid)}; only storages may be loaded that way`);
      return loadStorage(items.slice(1));
    },
  };
}
