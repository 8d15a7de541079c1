/**
 * A small typed graph builder that emits ONNX nodes with static shapes.
 *
 * Every op computes its output shape when it is emitted, so a model that does not fit its
 * weights or inputs fails here with a readable message instead of deep inside onnxruntime,
 * and the FLOPs of the graph are known without running it.
 */
import { chooseAttentionForm, chunkedAttention, type AttentionChoice, type AttentionShape } from '../attention/forms.js';
import { encodeF16 } from '../io/safetensors.js';
import { elemType, type FloatType, type Precision } from './precision.js';
import type { WeightSource } from './weights.js';

export type ElemType = 'float32' | 'float16' | 'bfloat16' | 'int64' | 'bool';

export type Attr =
  | { i: number }
  | { f: number }
  | { s: string }
  | { ints: readonly number[] }
  | { floats: readonly number[] }
  | { g: GraphDef };

export interface NodeDef {
  name: string;
  op: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

export interface ValueInfo {
  name: string;
  type: ElemType;
  shape: readonly number[];
}

export interface InitializerDef {
  name: string;
  type: ElemType;
  dims: readonly number[];
  /** Bytes inside a weights file next to the graph (ONNX external data). */
  external?: { file: string; offset: number; length: number };
  /** Inline values: fp32, fp16 bits, or int64. */
  data?: Float32Array | Uint16Array | BigInt64Array;
}

export interface GraphDef {
  name: string;
  nodes: NodeDef[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers: InitializerDef[];
}

/** FLOPs (multiply-add = 2) split into attention (QKᵀ and PV inside attention) and the rest. */
export interface FlopCount {
  attention: number;
  other: number;
}

/** One attention as built: how many query and key/value tokens reach it, and the form chosen. */
export interface AttentionCall {
  scope: string;
  batch: number;
  queries: number;
  keys: number;
  width: number;
  heads: number;
  form: AttentionChoice;
}

/** How a graph is computed: its precision, and the attention form for each attention's shape. */
export interface GraphOptions {
  precision?: Precision;
  attentionForm?: (shape: Omit<AttentionShape, 'provider'>) => AttentionChoice;
}

export class Value {
  constructor(
    readonly name: string,
    readonly shape: readonly number[],
    readonly type: ElemType = 'float32',
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  dim(i: number): number {
    const d = this.shape[i < 0 ? this.shape.length + i : i];
    if (d === undefined) throw new Error(`${this.name}: no axis ${i} in shape [${this.shape.join(', ')}]`);
    return d;
  }
}

const shapeStr = (s: readonly number[]): string => `[${s.join(', ')}]`;
const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

export function broadcastShapes(a: readonly number[], b: readonly number[], what: string): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`${what}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

interface Shared {
  /** The top-level graph: weights and their casts live there, visible to every branch. */
  root?: GraphBuilder;
  counter: number;
  initializers: Map<string, InitializerDef>;
  weights?: WeightSource;
  weightValues: Map<string, Value>;
  flops: FlopCount;
  /** The FLOPs of each counted node, by the name of its output. */
  nodeFlops: Map<string, number>;
  attention: AttentionCall[];
  /** Counting is switched off inside branches that a forward pass does not take by default. */
  counting: boolean;
  /** Element type of activations and weights ('float32' or 'float16'). */
  compute: FloatType;
  attentionForm: (shape: Omit<AttentionShape, 'provider'>) => AttentionChoice;
}

export class GraphBuilder {
  private readonly nodes: NodeDef[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly shared: Shared;
  /** Name prefix of nodes emitted now, so that profiles name the diffusers module. */
  scope = '';

  constructor(
    readonly name: string,
    weights?: WeightSource,
    shared?: Shared,
    opts: GraphOptions = {},
  ) {
    this.shared = shared ?? {
      counter: 0,
      initializers: new Map(),
      weights,
      weightValues: new Map(),
      flops: { attention: 0, other: 0 },
      nodeFlops: new Map(),
      attention: [],
      counting: true,
      compute: elemType(opts.precision ?? 'fp32'),
      attentionForm: opts.attentionForm ?? ((shape) => chooseAttentionForm({ ...shape, provider: 'cpu' })),
    };
    this.shared.root ??= this;
  }

  /** The element type activations and weights are computed in. */
  get computeType(): FloatType {
    return this.shared.compute;
  }

  /** `x` in the compute type (a graph input, or a value kept in fp32 on purpose). */
  toCompute(x: Value): Value {
    return this.cast(x, this.shared.compute);
  }

  get flops(): FlopCount {
    return { ...this.shared.flops };
  }

  /** Every attention in the graph, in the order built (the default branch of an If only). */
  get attentionCalls(): readonly AttentionCall[] {
    return this.shared.attention;
  }

  /** `build()` with `scope` as the name prefix of the nodes it emits, the previous one restored after. */
  scoped<T>(scope: string, build: () => T): T {
    const outer = this.scope;
    this.scope = scope;
    try {
      return build();
    } finally {
      this.scope = outer;
    }
  }

  private fresh(hint: string): string {
    return `${this.scope ? `${this.scope}/` : ''}${hint}_${this.shared.counter++}`;
  }

  /**
   * FLOPs of the nodes that do the math (MatMul, Conv, fused attention; not the MatMuls of
   * chunked attention) by the name of their output, for a profile's GFLOP/s per operator.
   */
  get flopsByNode(): ReadonlyMap<string, number> {
    return this.shared.nodeFlops;
  }

  private countFlops(kind: keyof FlopCount, n: number, node: Value): Value {
    if (this.shared.counting) {
      this.shared.flops[kind] += n;
      this.shared.nodeFlops.set(node.name, n);
    }
    return node;
  }

  input(name: string, shape: readonly number[], type: ElemType = 'float32'): Value {
    this.inputs.push({ name, type, shape });
    return new Value(name, shape, type);
  }

  /** A graph output; floats leave the graph as fp32 whatever the compute type. */
  output(v: Value, name: string): void {
    const src = v.type === 'float16' || v.type === 'bfloat16' ? this.cast(v, 'float32') : v;
    const out = this.op('Identity', [src], {}, src.shape, { type: src.type, outName: name });
    this.outputs.push({ name, type: out.type, shape: out.shape });
    // onnxruntime drops the Identity and gives the producer the output's name.
    const flops = this.shared.nodeFlops.get(src.name);
    if (flops !== undefined) this.shared.nodeFlops.set(name, flops);
  }

  /**
   * A weight of the model, in the compute type. A weight stored in that type feeds the graph
   * directly; others stay in their file and are cast by onnxruntime once, when the session is
   * created (constant folding), so no copy is made on disk and the model folder is never written.
   */
  weight(key: string, expectShape?: readonly number[]): Value {
    const cached = this.shared.weightValues.get(key);
    if (cached) return cached;
    const store = this.shared.weights;
    if (!store) throw new Error(`graph ${this.name} has no weights attached (asked for "${key}")`);
    const w = store.get(key, expectShape);
    const dims = w.transposed ? [w.shape[1]!, w.shape[0]!] : w.shape;
    const init: InitializerDef = {
      name: key,
      type: w.type,
      dims,
      external: { file: w.file, offset: w.offset, length: w.length },
    };
    this.shared.initializers.set(key, init);
    let v = new Value(key, dims, w.type);
    const root = this.shared.root!;
    // Stored transposed (OpenCLIP): turned back here, folded once when the session loads.
    if (w.transposed) v = root.transpose(v, [1, 0]);
    if (store.patched?.(key) && store.patch) {
      // Patches (LoRA deltas) are fp32 constants: merge in fp32, folded once at session creation.
      v = store.patch(root, key, w.type === 'float32' ? v : root.cast(v, 'float32'));
    }
    if (v.type !== this.shared.compute) v = root.cast(v, this.shared.compute);
    this.shared.weightValues.set(key, v);
    return v;
  }

  /**
   * A torch Linear weight [out, in] as the [in, out] matrix MatMul wants, or its output rows
   * [from, to) of it (folded at load, once, in the top-level graph).
   */
  linearWeight(key: string, outFeatures: number, inFeatures: number, rows?: readonly [number, number]): Value {
    const tkey = rows ? `${key}^T[${rows[0]}:${rows[1]}]` : `${key}^T`;
    const cached = this.shared.weightValues.get(tkey);
    if (cached) return cached;
    const root = this.shared.root!;
    const v = rows ? root.slice(this.linearWeight(key, outFeatures, inFeatures), 1, rows[0], rows[1]) : root.transpose(this.weight(key, [outFeatures, inFeatures]), [1, 0]);
    this.shared.weightValues.set(tkey, v);
    return v;
  }

  /** A float constant, in the compute type unless `type` says otherwise. */
  constant(values: Float32Array | readonly number[], shape: readonly number[], type: FloatType = this.shared.compute): Value {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    if (data.length !== prod(shape)) throw new Error(`constant: ${data.length} values for shape ${shapeStr(shape)}`);
    const name = this.fresh('const');
    this.shared.initializers.set(name, { name, type, dims: shape, data: type === 'float16' ? encodeF16(data) : data });
    return new Value(name, shape, type);
  }

  constInt64(values: readonly number[]): Value {
    const name = this.fresh('shape');
    this.shared.initializers.set(name, { name, type: 'int64', dims: [values.length], data: BigInt64Array.from(values, (v) => BigInt(v)) });
    return new Value(name, [values.length], 'int64');
  }

  /** Emits one node; `shape` is the output shape the caller has worked out. */
  op(
    type: string,
    inputs: readonly (Value | null)[],
    attrs: Record<string, Attr>,
    shape: readonly number[],
    opts: { domain?: string; type?: ElemType; outName?: string } = {},
  ): Value {
    const out = opts.outName ?? this.fresh(type);
    this.nodes.push({
      name: `${out}__node`,
      op: type,
      domain: opts.domain ?? '',
      inputs: inputs.map((v) => (v ? v.name : '')),
      outputs: [out],
      attrs,
    });
    return new Value(out, shape, opts.type ?? inputs.find((v) => v)?.type ?? 'float32');
  }

  /** TopK along `axis`, sorted: [values, int64 indices]. */
  topK(x: Value, k: number, axis: number, largest = true): [Value, Value] {
    const ax = axis < 0 ? x.rank + axis : axis;
    const shape = [...x.shape];
    shape[ax] = k;
    const values = this.fresh('TopK');
    const indices = `${values}_indices`;
    this.nodes.push({
      name: `${values}__node`,
      op: 'TopK',
      domain: '',
      inputs: [x.name, this.constInt64([k]).name],
      outputs: [values, indices],
      attrs: { axis: { i: ax }, largest: { i: largest ? 1 : 0 }, sorted: { i: 1 } },
    });
    return [new Value(values, shape, x.type), new Value(indices, shape, 'int64')];
  }

  // --- element-wise -------------------------------------------------------------------

  private binary(type: string, a: Value, b: Value | number): Value {
    const bv = typeof b === 'number' ? this.constant([b], [], a.type === 'float16' ? 'float16' : 'float32') : b;
    return this.op(type, [a, bv], {}, broadcastShapes(a.shape, bv.shape, type));
  }

  add(a: Value, b: Value | number): Value {
    return this.binary('Add', a, b);
  }
  sub(a: Value, b: Value | number): Value {
    return this.binary('Sub', a, b);
  }
  mul(a: Value, b: Value | number): Value {
    return this.binary('Mul', a, b);
  }
  div(a: Value, b: Value | number): Value {
    return this.binary('Div', a, b);
  }
  sigmoid(x: Value): Value {
    return this.op('Sigmoid', [x], {}, x.shape);
  }
  relu(x: Value): Value {
    return this.op('Relu', [x], {}, x.shape);
  }
  tanh(x: Value): Value {
    return this.op('Tanh', [x], {}, x.shape);
  }
  silu(x: Value): Value {
    return this.mul(x, this.sigmoid(x));
  }
  sin(x: Value): Value {
    return this.op('Sin', [x], {}, x.shape);
  }
  cos(x: Value): Value {
    return this.op('Cos', [x], {}, x.shape);
  }
  leakyRelu(x: Value, alpha: number): Value {
    return this.op('LeakyRelu', [x], { alpha: { f: alpha } }, x.shape);
  }
  /** max(0, x) + slope · min(0, x), `slope` broadcast against x. */
  prelu(x: Value, slope: Value): Value {
    return this.op('PRelu', [x, slope], {}, broadcastShapes(x.shape, slope.shape, 'PRelu'));
  }
  /** Exact (erf) GELU, as torch's default. */
  gelu(x: Value): Value {
    return this.op('Gelu', [x], {}, x.shape, { domain: 'com.microsoft' });
  }
  /** Cast to `to`; a value already of that type is returned as it is. */
  cast(x: Value, to: ElemType): Value {
    if (x.type === to) return x;
    return this.op('Cast', [x], { to: { i: ONNX_TYPE[to] } }, x.shape, { type: to });
  }

  // --- shape ----------------------------------------------------------------------------

  reshape(x: Value, shape: readonly number[]): Value {
    if (prod(shape) !== prod(x.shape)) throw new Error(`reshape ${x.name}: ${shapeStr(x.shape)} cannot become ${shapeStr(shape)}`);
    return this.op('Reshape', [x, this.constInt64(shape)], {}, shape);
  }

  transpose(x: Value, perm: readonly number[]): Value {
    return this.op('Transpose', [x], { perm: { ints: perm } }, perm.map((p) => x.dim(p)));
  }

  concat(xs: readonly Value[], axis: number): Value {
    const first = xs[0]!;
    const ax = axis < 0 ? first.rank + axis : axis;
    const shape = [...first.shape];
    shape[ax] = xs.reduce((s, v) => {
      v.shape.forEach((d, i) => {
        if (i !== ax && d !== first.shape[i]) throw new Error(`concat: ${shapeStr(v.shape)} does not match ${shapeStr(first.shape)} off axis ${ax}`);
      });
      return s + v.dim(ax);
    }, 0);
    return this.op('Concat', xs, { axis: { i: ax } }, shape);
  }

  /** x[..., start:end, ...] on one axis. */
  slice(x: Value, axis: number, start: number, end: number): Value {
    const ax = axis < 0 ? x.rank + axis : axis;
    const shape = [...x.shape];
    shape[ax] = end - start;
    return this.op('Slice', [x, this.constInt64([start]), this.constInt64([end]), this.constInt64([ax])], {}, shape);
  }

  /** Gathers along `axis` with constant int64 indices (a 1-D list). */
  gather(x: Value, axis: number, indices: readonly number[]): Value {
    const ax = axis < 0 ? x.rank + axis : axis;
    const shape = [...x.shape];
    shape[ax] = indices.length;
    return this.op('Gather', [x, this.constInt64(indices)], { axis: { i: ax } }, shape);
  }

  softmax(x: Value, axis = -1): Value {
    return this.op('Softmax', [x], { axis: { i: axis } }, x.shape);
  }

  /** Rows of `table` [V, D] picked by int64 `ids` [...]: an embedding lookup. */
  embedding(table: Value, ids: Value): Value {
    return this.op('Gather', [table, ids], { axis: { i: 0 } }, [...ids.shape, table.dim(1)], { type: table.type });
  }

  // --- linear algebra -------------------------------------------------------------------

  matmul(a: Value, b: Value): Value {
    const k = a.dim(-1);
    if (b.dim(-2) !== k) throw new Error(`matmul: ${shapeStr(a.shape)} × ${shapeStr(b.shape)}: inner sizes differ`);
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
    const m = a.dim(-2);
    const n = b.dim(-1);
    return this.countFlops('other', 2 * prod(batch) * m * n * k, this.op('MatMul', [a, b], {}, [...batch, m, n]));
  }

  conv(
    x: Value,
    w: Value,
    b: Value | null,
    opts: { stride?: number; pad?: number } = {},
  ): Value {
    const [n, c, h, wd] = x.shape as [number, number, number, number];
    const [co, ci, kh, kw] = w.shape as [number, number, number, number];
    if (ci !== c) throw new Error(`conv ${w.name}: weight takes ${ci} channels, input has ${c}`);
    const s = opts.stride ?? 1;
    const p = opts.pad ?? 0;
    const ho = Math.floor((h + 2 * p - kh) / s) + 1;
    const wo = Math.floor((wd + 2 * p - kw) / s) + 1;
    const out = this.op('Conv', b ? [x, w, b] : [x, w], { kernel_shape: { ints: [kh, kw] }, strides: { ints: [s, s] }, pads: { ints: [p, p, p, p] } }, [n, co, ho, wo]);
    return this.countFlops('other', 2 * n * co * ho * wo * ci * kh * kw, out);
  }

  // --- normalisation --------------------------------------------------------------------

  /**
   * Normalises each (sample, group) over the rest; no affine part. The statistics are taken in
   * fp32 (InstanceNormalization has no stash_type, unlike LayerNormalization): fp16 sums over
   * a 2048² level's groups lose too much.
   */
  instanceNorm(x: Value, eps: number): Value {
    const c = x.dim(1);
    const one = this.constant(new Float32Array(c).fill(1), [c], 'float32');
    const zero = this.constant(new Float32Array(c), [c], 'float32');
    const y = this.op('InstanceNormalization', [this.cast(x, 'float32'), one, zero], { epsilon: { f: eps } }, x.shape);
    return this.cast(y, x.type);
  }

  /**
   * x · scale + shift per channel (axis 1; scale and shift [C]). In fp32 one BatchNormalization
   * with mean 0, variance 1 and epsilon 0, which computes the same products and sums in one
   * pass over memory instead of Mul's and Add's two; elsewhere Mul and Add.
   */
  channelAffine(x: Value, scale: Value, shift: Value): Value {
    const c = x.dim(1);
    if (x.type !== 'float32') {
      const bcast = [c, ...x.shape.slice(2).map(() => 1)];
      return this.add(this.mul(x, this.reshape(scale, bcast)), this.reshape(shift, bcast));
    }
    const mean = this.constant(new Float32Array(c), [c], 'float32');
    const variance = this.constant(new Float32Array(c).fill(1), [c], 'float32');
    return this.op('BatchNormalization', [x, scale, shift, mean, variance], { epsilon: { f: 0 } }, x.shape);
  }

  layerNorm(x: Value, scale: Value, bias: Value, eps: number): Value {
    return this.op('LayerNormalization', [x, scale, bias], { axis: { i: -1 }, epsilon: { f: eps } }, x.shape);
  }

  // --- pooling and resizing -------------------------------------------------------------

  pool(kind: 'AveragePool' | 'MaxPool', x: Value, k: number): Value {
    const [n, c, h, w] = x.shape as [number, number, number, number];
    return this.op(kind, [x], { kernel_shape: { ints: [k, k] }, strides: { ints: [k, k] } }, [n, c, Math.floor(h / k), Math.floor(w / k)]);
  }

  /** ONNX Resize to an explicit spatial size on an NCHW tensor. */
  resize(x: Value, size: readonly [number, number], attrs: Record<string, Attr>): Value {
    const [n, c] = x.shape as [number, number];
    const sizes = this.constInt64([n, c, size[0], size[1]]);
    return this.op('Resize', [x, null, null, sizes], attrs, [n, c, size[0], size[1]]);
  }

  // --- attention ------------------------------------------------------------------------

  /**
   * Attention q [B, S, D], k and v [B, L, D] → [B, S, D], L possibly fewer than S (ToDo's
   * shape), in the form the graph's policy picks for this shape (attention/forms.ts):
   * com.microsoft.MultiHeadAttention (without mask or bias its CPU kernel takes the tiled,
   * flash path) or query-chunked MatMul-Softmax-MatMul.
   */
  multiHeadAttention(q: Value, k: Value, v: Value, heads: number): Value {
    const [b, s, d] = q.shape as [number, number, number];
    const l = k.dim(1);
    if (d % heads !== 0) throw new Error(`attention: width ${d} is not divisible by ${heads} heads`);
    if (v.dim(1) !== l || k.dim(2) !== d || v.dim(2) !== d) {
      throw new Error(`attention: q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)} do not fit together`);
    }
    const flops = 4 * b * s * l * d;
    const elementBytes = q.type === 'float16' ? 2 : 4;
    const form = this.shared.attentionForm({ batch: b, queries: s, keys: l, heads, elementBytes });
    if (this.shared.counting) this.shared.attention.push({ scope: this.scope, batch: b, queries: s, keys: l, width: d, heads, form });
    if (form.form === 'chunked') {
      if (this.shared.counting) this.shared.flops.attention += flops;
      return chunkedAttention(this, q, k, v, heads, form.chunk ?? s);
    }
    return this.countFlops('attention', flops, this.op('MultiHeadAttention', [q, k, v], { num_heads: { i: heads } }, q.shape, { domain: 'com.microsoft' }));
  }

  // --- control flow ---------------------------------------------------------------------

  /**
   * If(cond) then … else …: both branches see every value of this graph and its weights. The
   * FLOP count follows the `then` branch.
   */
  ifElse(cond: Value, thenFn: (g: GraphBuilder) => Value, elseFn: (g: GraphBuilder) => Value): Value {
    const branch = (fn: (g: GraphBuilder) => Value, tag: string, counting: boolean): [GraphDef, Value] => {
      const sub = new GraphBuilder(`${this.name}_${tag}`, undefined, this.shared);
      sub.scope = this.scope;
      const before = this.shared.counting;
      this.shared.counting = before && counting;
      const out = fn(sub);
      this.shared.counting = before;
      const outName = this.fresh(`${tag}_out`);
      sub.op('Identity', [out], {}, out.shape, { outName });
      return [{ name: sub.name, nodes: sub.nodes, inputs: [], outputs: [{ name: outName, type: out.type, shape: out.shape }], initializers: [] }, out];
    };
    const [thenG, thenOut] = branch(thenFn, 'then', true);
    const [elseG, elseOut] = branch(elseFn, 'else', false);
    if (shapeStr(thenOut.shape) !== shapeStr(elseOut.shape)) {
      throw new Error(`if: branch shapes differ, ${shapeStr(thenOut.shape)} vs ${shapeStr(elseOut.shape)}`);
    }
    return this.op('If', [cond], { then_branch: { g: thenG }, else_branch: { g: elseG } }, thenOut.shape);
  }

  /** The finished graph. */
  build(): GraphDef {
    return {
      name: this.name,
      nodes: this.nodes,
      inputs: this.inputs,
      outputs: this.outputs,
      initializers: [...this.shared.initializers.values()],
    };
  }
}

export const ONNX_TYPE: Record<ElemType, number> = { float32: 1, int64: 7, bool: 9, float16: 10, bfloat16: 16 };
