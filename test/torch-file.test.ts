import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { storedWeight } from '../src/graph/weights.js';
import { openWeightsFile } from '../src/io/weights-file.js';
import { TorchFile, TorchFileError } from '../src/io/torch-file.js';
import { repoRoot } from './helpers.js';
import { writeTorchFile } from './torch-writer.js';

/** Files written by test/data/torch/make.py with Python's own pickler (stand-in torch globals). */
const data = join(repoRoot, 'test', 'data', 'torch');
const expected = JSON.parse(readFileSync(join(data, 'expected.json'), 'utf8')) as Record<string, [string, number[], number[]]>;
const tmp = mkdtempSync(join(tmpdir(), 'todo-sd-torch-'));

function checkStateDict(file: string): TorchFile {
  const f = openWeightsFile(join(data, file));
  assert.ok(f instanceof TorchFile, `${file} opens as a PyTorch file`);
  assert.deepEqual([...f.tensors.keys()].sort(), Object.keys(expected).sort());
  for (const [name, [dtype, shape, values]] of Object.entries(expected)) {
    const info = f.info(name);
    assert.equal(info.dtype, dtype, name);
    assert.deepEqual(info.shape, shape, name);
    if (dtype === 'I64') assert.deepEqual([...f.readInt64(name)], values.map((v) => BigInt(v)), name);
    else assert.deepEqual([...f.readFloat32(name)], values, name);
  }
  // The transposed view is no byte range (so no graph weight); the others are, and point where the values are.
  assert.deepEqual(f.info('t').strides, [1, 3]);
  assert.throws(() => storedWeight(f, f.info('t'), 'weight "t"'), /weight "t" is stored as a non-contiguous view \(strides \[1, 3\]\).*save the file again with contiguous tensors/);
  assert.equal(storedWeight(f, f.info('a'), 'weight "a"').offset, f.info('a').offset);
  assert.equal(f.info('a').strides, undefined);
  assert.equal(f.info('row').offset, f.info('a').offset + 12);
  return f;
}

test('torch files: the zip format (torch.save since 1.6) gives every tensor, views and parameters included', () => {
  const f = checkStateDict('basic-zip.pth');
  assert.equal(f.format, 'zip');
});

test('torch files: the legacy stream format (before 1.6) gives the same tensors', () => {
  assert.equal(checkStateDict('basic-legacy.pth').format, 'legacy');
});

test('torch files: pickle protocol 4 (frames, memoize, stack globals) and deflated data.pkl records', () => {
  checkStateDict('basic-proto4.pth');
  assert.throws(() => openWeightsFile(join(data, 'deflated.pth')), /storage \d+ is compressed inside the archive/);
});

test('torch files: an A1111 checkpoint is unwrapped from state_dict; plain fields become metadata; its Lightning callback is inert', () => {
  const f = checkStateDict('a1111.ckpt');
  assert.equal(f.metadata.global_step, '1234');
  assert.equal(f.metadata.epoch, '5');
});

test('torch files: BasicSR / Real-ESRGAN files use params_ema before params', () => {
  checkStateDict('params-ema.pth');
});

for (const [file, global] of [
  ['evil-posix-system.pth', 'posix.system'],
  ['evil-eval.pth', 'builtins.eval'],
  ['evil-model.pth', 'torch.nn.modules.conv.Conv2d'],
  ['evil-os-system.pt', 'os.system'],
  ['evil-inst.pt', 'os.system'],
  ['evil-stack-global.pt', 'builtins.exec'],
] as const) {
  test(`torch files: ${file} is refused, naming ${global} and the file, without running anything`, () => {
    assert.throws(
      () => openWeightsFile(join(data, file)),
      (e: Error) => e instanceof TorchFileError && e.message.includes(`"${global}"`) && e.message.includes(file) && /Nothing in the file was run/.test(e.message),
    );
  });
}

test('torch files: truncated archives and streams fail with a clear error at every cut', () => {
  for (const file of ['basic-zip.pth', 'basic-legacy.pth']) {
    const size = statSync(join(data, file)).size;
    for (const keep of [0, 5, Math.floor(size / 3), Math.floor(size / 2), size - 30, size - 1]) {
      const p = join(tmp, `cut-${keep}-${file}`);
      copyFileSync(join(data, file), p);
      truncateSync(p, keep);
      assert.throws(() => TorchFile.open(p), (e: Error) => e instanceof TorchFileError && /truncated|corrupt|empty|not a PyTorch/.test(e.message) && e.message.includes(p), `${file} cut at ${keep}`);
    }
  }
  assert.deepEqual(readdirSync(tmp).filter((f) => !/^(cut|written)-/.test(f)), [], 'reading writes nothing');
});

test('torch files: what the test writer writes reads back, zip64 records included (checkpoints over 4 GiB have them)', () => {
  const bytes = (values: number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);
  for (const [format, zip64] of [['zip', false], ['zip', true], ['legacy', false]] as const) {
    const p = join(tmp, `written-${format}-${zip64}.pth`);
    writeTorchFile(p, { w: { dtype: 'F32', shape: [2, 2], data: bytes([1, 2, 3, 4]) }, b: { dtype: 'F32', shape: [2], data: bytes([5, 6]) } }, { format, zip64, wrap: 'params_ema' });
    const f = TorchFile.open(p);
    assert.deepEqual([...f.readFloat32('w')], [1, 2, 3, 4]);
    assert.deepEqual([...f.readFloat32('b')], [5, 6]);
  }
});

test('torch files: a missing file and a file of another kind are named', () => {
  assert.throws(() => openWeightsFile(join(tmp, 'missing.ckpt')), /missing\.ckpt: file not found/);
  assert.throws(() => TorchFile.open(join(data, 'make.py')), /not a PyTorch file/);
});
