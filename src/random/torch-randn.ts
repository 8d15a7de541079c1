/**
 * PyTorch's CPU generator, reproduced so that a seed means here what it means in diffusers
 * with `torch.Generator("cpu").manual_seed(seed)`: the same mt19937 stream, consumed the
 * same way by `torch.randn` and `torch.randint`.
 *
 * `randn` has two paths, as in ATen's `normal_kernel`:
 * - numel >= 16: `normal_fill` — all uniforms first (24-bit floats), then Box-Muller on
 *   blocks of 16 (element j pairs with j + 8); a ragged tail redraws 16 fresh uniforms and
 *   recomputes the last 16 elements. x86-64 PyTorch builds run this block with AVX2
 *   (`normal_fill_16_AVX2`), whose log/sin/cos are the Cephes polynomials of
 *   avx_mathfun.h evaluated in fp32, with GCC contracting multiply-adds into FMAs. That
 *   exact arithmetic is emulated below, which is what makes the result bit-exact.
 * - numel < 16: `at::normal_distribution<double>` per element — 53-bit uniforms from two
 *   draws each, Box-Muller in double, the sine half cached in the generator for the next
 *   call, the result cast to float.
 */
import { numel } from '../tensor.js';

const N = 624;
const M = 397;

/** The 32-bit Mersenne Twister, seeded like `std::mt19937` / ATen's `at::mt19937`. */
export class Mt19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  /** Only the low 32 bits of the seed matter, as in ATen (`seed & 0xffffffff`). */
  constructor(seed: number | bigint = 5489) {
    const s = this.state;
    s[0] = Number(BigInt.asUintN(32, toSeed(seed)));
    for (let j = 1; j < N; j++) {
      const prev = s[j - 1]!;
      s[j] = Math.imul(1812433253, prev ^ (prev >>> 30)) + j;
    }
  }

  nextU32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const s = this.state;
    for (let k = 0; k < N; k++) {
      const y = (s[k]! & 0x80000000) | (s[(k + 1) % N]! & 0x7fffffff);
      s[k] = s[(k + M) % N]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }
}

/**
 * Python's `manual_seed` accepts any integer in [-2^63, 2^64) (negative ones as two's
 * complement); anything else is a caller error, not something to wrap silently.
 */
function toSeed(seed: number | bigint): bigint {
  if (typeof seed === 'number' && !Number.isSafeInteger(seed)) {
    throw new RangeError(`seed must be an integer, got ${seed}`);
  }
  const s = BigInt(seed);
  if (s < -(1n << 63n) || s >= 1n << 64n) throw new RangeError(`seed ${s} is outside [-2^63, 2^64)`);
  return s;
}

/** A `torch.Generator("cpu")`: the mt19937 engine plus the cached second normal sample. */
export class TorchGenerator {
  private engine: Mt19937;
  private nextDoubleNormal: number | undefined;

  constructor(seed: number | bigint) {
    this.engine = new Mt19937(seed);
  }

  /** Reseeds in place and drops the cached normal sample, as `manual_seed` does. */
  manualSeed(seed: number | bigint): this {
    this.engine = new Mt19937(seed);
    this.nextDoubleNormal = undefined;
    return this;
  }

  /** `CPUGeneratorImpl::random()`: one 32-bit draw. */
  random(): number {
    return this.engine.nextU32();
  }

  /** `uniform_real_distribution<float>(0, 1)`: the low 24 bits of one draw, exact in fp32. */
  private uniformFloat(): number {
    return (this.engine.nextU32() & 0xffffff) * 2 ** -24;
  }

  /** `uniform_real_distribution<double>(0, 1)`: the low 53 bits of `random64()` (first draw high). */
  private uniformDouble(): number {
    const hi = this.engine.nextU32();
    const lo = this.engine.nextU32();
    return ((hi & 0x1fffff) * 2 ** 32 + lo) * 2 ** -53;
  }

  /** `at::normal_distribution<double>(0, 1)`, including the generator-held sine half. */
  private normalDouble(): number {
    if (this.nextDoubleNormal !== undefined) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = undefined;
      return v;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** `torch.randn(dims, generator=this)` in float32. */
  randn(dims: readonly number[]): Float32Array {
    const size = checkedNumel(dims);
    const data = new Float32Array(size);
    if (size < 16) {
      // `+ 0` is torch's `x * std + mean` with mean 0: it turns -0 into +0.
      for (let i = 0; i < size; i++) data[i] = this.normalDouble() + 0;
      return data;
    }
    for (let i = 0; i < size; i++) data[i] = this.uniformFloat();
    for (let i = 0; i + 16 <= size; i += 16) normalFill16(data, i);
    if (size % 16 !== 0) {
      const start = size - 16;
      for (let i = 0; i < 16; i++) data[start + i] = this.uniformFloat();
      normalFill16(data, start);
    }
    return data;
  }
}

/** `torch.randn(dims, generator=torch.Generator("cpu").manual_seed(seed))`. */
export function randn(seed: number | bigint, dims: readonly number[]): Float32Array {
  return new TorchGenerator(seed).randn(dims);
}

/**
 * `torch.randint(low, high, dims, generator=gen)` (int64 on CPU): `random() % range + low`
 * per element in order. Bounds are limited to int32 so that the range stays below 2^32,
 * where torch uses a single 32-bit draw (wider ranges would take `random64()`).
 */
export function randint(gen: TorchGenerator, high: number, dims: readonly number[], low = 0): Int32Array {
  if (!Number.isInteger(low) || !Number.isInteger(high) || low < -(2 ** 31) || high > 2 ** 31 || low >= high || high - low >= 2 ** 32) {
    throw new RangeError(`randint needs integers -2^31 <= low < high <= 2^31 with high - low < 2^32, got low=${low}, high=${high}`);
  }
  const range = high - low;
  const out = new Int32Array(checkedNumel(dims));
  for (let i = 0; i < out.length; i++) out[i] = (gen.random() % range) + low;
  return out;
}

function checkedNumel(dims: readonly number[]): number {
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RangeError(`dims [${dims.join(', ')}] must be non-negative integers`);
  }
  return numel(dims);
}

// ---------------------------------------------------------------------------------------
// fp32 emulation of normal_fill_16_AVX2. Every operation rounds to float32 exactly where
// the compiled kernel does; `fma` marks where GCC fuses a multiply into the following add.

const f32 = Math.fround;
const bitsF32 = new Float32Array(1);
const bitsU32 = new Uint32Array(bitsF32.buffer);

function floatBits(x: number): number {
  bitsF32[0] = x;
  return bitsU32[0]!;
}

function bitsFloat(b: number): number {
  bitsU32[0] = b >>> 0;
  return bitsF32[0]!;
}

/** The fp32 neighbour of `r` on the side of `toward`. */
function neighbour(r: number, toward: number): number {
  if (r === 0) return toward > 0 ? bitsFloat(1) : -bitsFloat(1);
  const up = toward > r === r > 0;
  return bitsFloat(floatBits(r) + (up ? 1 : -1));
}

/**
 * Single-rounding fp32 fused multiply-add. The product of two floats is exact in double;
 * the sum's rounding error (TwoSum) only matters when the double sum falls exactly on a
 * midpoint between two floats, where it decides the direction.
 */
function fma(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bv = s - p;
  const err = p - (s - bv) + (c - bv);
  const r = f32(s);
  if (err === 0 || r === s) return r;
  const other = neighbour(r, s);
  if (Math.abs(s - r) !== Math.abs(other - s)) return r;
  return err > 0 === other > r ? other : r;
}

const mul = (a: number, b: number): number => f32(a * b);
const add = (a: number, b: number): number => f32(a + b);

const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(f32);
const SQRTHF = f32(Math.SQRT1_2);
const LOG_Q1 = f32(-2.1219444e-4);
const LOG_Q2 = f32(0.693359375);
const MIN_NORM_POS = bitsFloat(0x00800000);

/** avx_mathfun `log256_ps` for one positive lane. */
function cephesLogf(v: number): number {
  const b = floatBits(Math.max(v, MIN_NORM_POS));
  let e = (b >>> 23) - 0x7f + 1;
  let x = bitsFloat((b & 0x807fffff) | 0x3f000000); // mantissa in [0.5, 1)
  const small = x < SQRTHF;
  x = add(f32(x - 1), small ? x : 0);
  if (small) e -= 1;
  const z = mul(x, x);
  let y = LOG_P[0]!;
  for (let k = 1; k < LOG_P.length; k++) y = fma(y, x, LOG_P[k]!);
  y = mul(y, x);
  y = fma(y, z, mul(e, LOG_Q1));
  y = f32(y - z * 0.5); // z * 0.5 is exact, so fused or not rounds the same
  return fma(e, LOG_Q2, add(x, y));
}

const FOPI = f32(1.27323954473516);
const DP1 = f32(-0.78515625);
const DP2 = f32(-2.4187564849853515625e-4);
const DP3 = f32(-3.774894977445941e-8);
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f32);
const COS_P = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f32);

/** avx_mathfun `sincos256_ps` for one lane with 0 <= theta < 2π; returns [sin, cos]. */
function cephesSinCosf(theta: number): [number, number] {
  let j = Math.trunc(mul(theta, FOPI));
  j = (j + 1) & ~1;
  let x = fma(j, DP1, theta);
  x = fma(j, DP2, x);
  x = fma(j, DP3, x);
  const z = mul(x, x);

  let c = fma(COS_P[0]!, z, COS_P[1]!);
  c = fma(c, z, COS_P[2]!);
  c = mul(c, z);
  c = add(fma(c, z, -(z * 0.5)), 1);

  let s = fma(SIN_P[0]!, z, SIN_P[1]!);
  s = fma(s, z, SIN_P[2]!);
  s = mul(s, z);
  s = fma(s, x, x);

  const swap = (j & 2) !== 0;
  const sin = swap ? c : s;
  const cos = swap ? s : c;
  return [j & 4 ? -sin : sin, (j - 2) & 4 ? cos : -cos];
}

const TWO_PI = f32(2 * Math.PI);

function normalFill16(data: Float32Array, offset: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[offset + j]!);
    const radius = f32(Math.sqrt(mul(-2, cephesLogf(u1))));
    const [sin, cos] = cephesSinCosf(mul(TWO_PI, data[offset + j + 8]!));
    // `+ 0` stands for the kernel's fmadd(n, std = 1, mean = 0), which turns -0 into +0.
    data[offset + j] = mul(radius, cos) + 0;
    data[offset + j + 8] = mul(radius, sin) + 0;
  }
}
