"""Writes the PyTorch-format test files next to this script, without PyTorch.

Stand-in `torch` modules give pickle the same global names torch.save writes (torch._utils.
_rebuild_tensor_v2, torch.FloatStorage, ...), so Python's own pickler emits the same opcode
stream; the containers (zip archive since torch 1.6, the legacy stream before it) follow
torch/serialization.py. Run: python3 test/data/torch/make.py  (writes *.pth, *.ckpt, expected.json).
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def module(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m


torch = module('torch')
utils = module('torch._utils')
torch._utils = utils
for fname in ['_rebuild_tensor_v2', '_rebuild_tensor_v3', '_rebuild_parameter']:
    f = (lambda *a: None)
    f.__name__ = f.__qualname__ = fname
    f.__module__ = 'torch._utils'
    setattr(utils, fname, f)

STORAGE = {}
for name, fmt, size in [('Float', 'f', 4), ('Half', 'e', 2), ('BFloat16', None, 2), ('Long', 'q', 8), ('Int', 'i', 4), ('Double', 'd', 8), ('Byte', 'B', 1)]:
    cls = type(f'{name}Storage', (), {'__module__': 'torch'})
    setattr(torch, cls.__name__, cls)
    STORAGE[name] = (cls, fmt, size)


class Dtype:
    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return self.name


for n in ['float32', 'float16']:
    setattr(torch, n, Dtype(n))


def bf16(values):
    # Values here are exact in bfloat16: the top half of their float32 bits.
    return b''.join(struct.pack('<f', v)[2:] for v in values)


class Storage:
    def __init__(self, kind, values):
        self.cls, fmt, self.size = STORAGE[kind]
        self.data = bf16(values) if fmt is None else struct.pack('<' + fmt * len(values), *values)
        self.numel = len(values)


class Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce_ex__(self, proto):
        return (utils._rebuild_tensor_v2, (self.storage, self.offset, tuple(self.shape), tuple(self.stride), False, collections.OrderedDict()))


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, proto):
        return (utils._rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


def contiguous(kind, values, shape):
    stride, s = [], 1
    for d in reversed(shape):
        stride.insert(0, s)
        s *= d
    return Tensor(Storage(kind, values), 0, shape, stride)


class Pickler(pickle.Pickler):
    def __init__(self, f, protocol, legacy):
        super().__init__(f, protocol)
        self.keys, self.legacy = {}, legacy

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        key = self.keys.setdefault(id(obj), (str(len(self.keys)), obj))[0]
        fields = ('storage', obj.cls, key, 'cpu', obj.numel)
        return fields + (None,) if self.legacy else fields


def save_zip(path, obj, protocol=2, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    p = Pickler(buf, protocol, False)
    p.dump(obj)
    with zipfile.ZipFile(path, 'w', compression) as z:
        z.writestr('archive/data.pkl', buf.getvalue())
        z.writestr('archive/byteorder', 'little')
        for key, storage in sorted(p.keys.values()):
            z.writestr(f'archive/data/{key}', storage.data)
        z.writestr('archive/version', '3\n')


def save_legacy(path, obj):
    with open(path, 'wb') as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({'protocol_version': 1001, 'little_endian': True, 'type_sizes': {'short': 2, 'int': 4, 'long': 4}}, f, protocol=2)
        p = Pickler(f, 2, True)
        p.dump(obj)
        keys = sorted(p.keys.values())
        pickle.dump([k for k, _ in keys], f, protocol=2)
        for _, storage in keys:
            f.write(struct.pack('<q', storage.numel) + storage.data)


def state_dict():
    sd = collections.OrderedDict()
    sd['a'] = contiguous('Float', [1.0, -2.5, 0.25, 3.0, 4.5, -6.0], [2, 3])
    sd['b'] = contiguous('Half', [0.5, -1.0, 2.0, 65504.0], [4])
    sd['c'] = contiguous('BFloat16', [1.5, -0.125, 256.0, 3.0], [2, 2])
    sd['d'] = contiguous('Long', [7, -1, 1 << 40], [3])
    # A view into a's storage (its second row), and a transposed, non-contiguous view.
    sd['row'] = Tensor(sd['a'].storage, 3, [3], [1])
    sd['t'] = Tensor(sd['a'].storage, 0, [3, 2], [1, 3])
    sd['p'] = Parameter(contiguous('Float', [0.75, -0.5], [2]))
    sd['scalar'] = contiguous('Double', [2.25], [])
    sd._metadata = collections.OrderedDict([('', {'version': 1})])
    return sd


EXPECTED = {
    'a': ['F32', [2, 3], [1.0, -2.5, 0.25, 3.0, 4.5, -6.0]],
    'b': ['F16', [4], [0.5, -1.0, 2.0, 65504.0]],
    'c': ['BF16', [2, 2], [1.5, -0.125, 256.0, 3.0]],
    'd': ['I64', [3], [7, -1, 1 << 40]],
    'row': ['F32', [3], [3.0, 4.5, -6.0]],
    't': ['F32', [3, 2], [1.0, 3.0, -2.5, 4.5, 0.25, -6.0]],
    'p': ['F32', [2], [0.75, -0.5]],
    'scalar': ['F64', [], [2.25]],
}


class ModelCheckpoint:
    """Stands for pytorch_lightning's callback that original SD 1.x checkpoints carry."""
    __module__ = 'pytorch_lightning.callbacks.model_checkpoint'

    def __init__(self):
        self.monitor, self.best_model_score = None, 0.5


module('pytorch_lightning')
module('pytorch_lightning.callbacks')
module('pytorch_lightning.callbacks.model_checkpoint').ModelCheckpoint = ModelCheckpoint


class Conv2d:
    """A pickled model object instead of a state dict."""
    __module__ = 'torch.nn.modules.conv'


module('torch.nn')
module('torch.nn.modules')
module('torch.nn.modules.conv').Conv2d = Conv2d


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def out(name):
    return os.path.join(HERE, name)


save_zip(out('basic-zip.pth'), state_dict())
save_legacy(out('basic-legacy.pth'), state_dict())
save_zip(out('basic-proto4.pth'), state_dict(), protocol=4)
save_zip(out('deflated.pth'), state_dict(), compression=zipfile.ZIP_DEFLATED)
save_zip(out('a1111.ckpt'), {'epoch': 5, 'global_step': 1234, 'callbacks': {'ModelCheckpoint': ModelCheckpoint()}, 'state_dict': state_dict()})
other = collections.OrderedDict([('a', contiguous('Float', [9.0], [1]))])
save_legacy(out('params-ema.pth'), {'params': other, 'params_ema': state_dict()})

# Malicious files: each asks for a callable that would run a command under torch.load(weights_only=False).
sd = state_dict()
sd['x'] = Evil(os.system, 'echo pwned')  # pickles as GLOBAL posix.system
save_zip(out('evil-posix-system.pth'), sd)
save_zip(out('evil-eval.pth'), collections.OrderedDict([('x', Evil(eval, '__import__("os").system("echo pwned")'))]))
save_zip(out('evil-model.pth'), {'model': Conv2d()})
with open(out('evil-os-system.pt'), 'wb') as f:
    f.write(b'\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.')
with open(out('evil-inst.pt'), 'wb') as f:
    f.write(b"(S'echo pwned'\nios\nsystem\n.")
with open(out('evil-stack-global.pt'), 'wb') as f:
    f.write(b'\x80\x04\x8c\x08builtins\x94\x8c\x04exec\x94\x93\x94\x8c\x0fprint("pwned")\x94\x85\x94R\x94.')

with open(out('expected.json'), 'w') as f:
    json.dump(EXPECTED, f, indent=1)
