import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { Mt19937, TorchGenerator, randint, randn } from '../src/random/torch-randn.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const sharedRoot = process.env.TODO_SD_SHARED ?? join(repoRoot, '..', 'shared');
const fixturePath = join(sharedRoot, 'fixtures', 'torch-randn', 'randn.safetensors');

function fixture(name: string): Float32Array {
  // A missing fixture must fail the suite, not skip it.
  assert.ok(existsSync(fixturePath), `fixture missing: ${fixturePath}`);
  return SafetensorsFile.open(fixturePath).readFloat32(name);
}

/** Bitwise equality, reporting the first differing element. */
function assertBitExact(actual: Float32Array, expected: Float32Array, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${label}[${i}]: got ${actual[i]}, torch gave ${expected[i]}`);
  }
}

test('mt19937 with the default seed 5489 gives the reference outputs', () => {
  const mt = new Mt19937();
  assert.deepEqual(
    Array.from({ length: 5 }, () => mt.nextU32()),
    [3499211612, 581869302, 3890346734, 3586334585, 545404204],
  );
  // C++ [rand.predef]: the 10000th output of a default-constructed mt19937.
  for (let i = 6; i < 10000; i++) mt.nextU32();
  assert.equal(mt.nextU32(), 4123659995);
});

test('mt19937 uses only the low 32 bits of the seed, negative seeds as two\'s complement', () => {
  const first = (seed: number | bigint) => new Mt19937(seed).nextU32();
  assert.equal(first((1n << 32n) + 7n), first(7));
  assert.equal(first(-1), first(0xffffffff));
  assert.throws(() => new Mt19937(1.5), RangeError);
  assert.throws(() => new Mt19937(1n << 64n), RangeError);
});

for (const [name, seed, dims] of [
  ['seed0_1x4x8x8', 0, [1, 4, 8, 8]],
  ['seed42_2x4x8x8', 42, [2, 4, 8, 8]],
  ['seed1234_7', 1234, [7]],
] as const) {
  test(`randn matches torch bit for bit: ${name}`, () => {
    assertBitExact(randn(seed, dims), fixture(name), name);
  });
}

test('randn with a ragged size redraws and recomputes the last 16 values', () => {
  // 20 = one block of 16 plus a tail: the first 4 values come from the full first block
  // and equal the first 4 of the 32-value draw (whose first block uses the same uniforms).
  const ragged = randn(0, [20]);
  const full = randn(0, [32]);
  assertBitExact(ragged.subarray(0, 4), full.subarray(0, 4), 'ragged head');
  assert.notDeepEqual(Array.from(ragged.subarray(4)), Array.from(full.subarray(4, 20)));
});

test('small draws share the generator\'s cached normal sample across calls', () => {
  const gen = new TorchGenerator(1234);
  const joined = new Float32Array(7);
  joined.set(gen.randn([3]), 0);
  joined.set(gen.randn([4]), 3);
  assertBitExact(joined, fixture('seed1234_7'), 'split draw');
  gen.manualSeed(1234);
  assertBitExact(gen.randn([7]), fixture('seed1234_7'), 'after manualSeed');
});

test('randn rejects invalid dims and handles empty tensors', () => {
  assert.equal(randn(0, [0, 4]).length, 0);
  assert.throws(() => randn(0, [2, -1]), RangeError);
  assert.throws(() => randn(0, [2.5]), RangeError);
});

test('randint follows torch.randint on a CPU generator', () => {
  // torch.randint(10, (5,), generator=torch.Generator().manual_seed(0)) == [4, 9, 3, 0, 3]
  assert.deepEqual(Array.from(randint(new TorchGenerator(0), 10, [5])), [4, 9, 3, 0, 3]);
  const mt = new Mt19937(7);
  const expected = Array.from({ length: 6 }, () => (mt.nextU32() % 5) - 2);
  assert.deepEqual(Array.from(randint(new TorchGenerator(7), 3, [2, 3], -2)), expected);
  assert.throws(() => randint(new TorchGenerator(0), 0, [1]), RangeError);
  assert.throws(() => randint(new TorchGenerator(0), 2 ** 31, [1], -(2 ** 31)), RangeError);
});
