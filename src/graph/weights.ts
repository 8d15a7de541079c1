/**
 * The weights of one model component (one or more safetensors or PyTorch files in one folder),
 * looked up by their diffusers / transformers key. Graph initializers point at byte ranges of
 * these files (ONNX external data), so nothing is copied.
 */
import { statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { DType, TensorFile, TensorInfo } from '../io/tensor-file.js';
import { openWeightsFile } from '../io/weights-file.js';
import type { ElemType, GraphBuilder, Value } from './builder.js';

const FLOAT_TYPES: Partial<Record<DType, ElemType>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** Where a stored float tensor's bytes are: `what` names it in errors (a weight may not be a strided view or an integer). */
export function storedWeight(file: TensorFile, t: TensorInfo, what: string): { file: string; offset: number; length: number; type: ElemType } {
  const type = FLOAT_TYPES[t.dtype];
  if (!type) throw new Error(`${what} has dtype ${t.dtype}; expected F32, F16 or BF16`);
  if (t.strides) {
    throw new Error(
      `${what} is stored as a non-contiguous view (strides [${t.strides.join(', ')}]) in ${basename(file.path)}, so its values are no byte range of the file; ` +
        'save the file again with contiguous tensors (torch.save({k: v.contiguous() for k, v in sd.items()}, …)) or convert it to safetensors',
    );
  }
  return { file: basename(file.path), offset: t.offset, length: t.byteLength, type };
}

export interface WeightRef {
  /** File name relative to `folder`. */
  file: string;
  offset: number;
  length: number;
  shape: number[];
  type: ElemType;
  /** The bytes hold the 2-D transpose of `shape` (OpenCLIP's [in, out] matrices): the graph transposes them back. */
  transposed?: boolean;
}

/** Where a graph's weights come from: real files, or a recorder that lists what a model needs. */
export interface WeightSource {
  get(key: string, expectShape?: readonly number[]): WeightRef;
  /** Whether `patch` changes the weight `key`. */
  patched?(key: string): boolean;
  /** Graph ops on the fp32 weight `key` (in the root graph) that change it, e.g. a LoRA merge. */
  patch?(g: GraphBuilder, key: string, w: Value): Value;
}

/** Changes to some weights, made by graph ops on top of the stored tensors (LoRA deltas). */
export interface WeightPatches {
  has(key: string): boolean;
  apply(g: GraphBuilder, key: string, w: Value): Value;
  /** Identifies the patches in the graph cache key. */
  fingerprint(): string;
}

/** Weights in files on disk, in one folder: what a component's onnxruntime session reads. */
export interface WeightFiles extends WeightSource {
  readonly folder: string;
  /** Changes whenever the files or the patches do: part of the graph cache key. */
  fingerprint(): string;
  /** Replaces the patches applied to the weights of graphs built from now on. */
  setPatches(patches: WeightPatches | undefined): void;
}

/** Weight files whose tensors LoRA-style patches may change, as graph ops, in graphs built from now on. */
export abstract class PatchableWeights {
  protected patches?: WeightPatches;

  /** Replaces the patches applied to the weights of graphs built from now on. */
  setPatches(patches: WeightPatches | undefined): void {
    this.patches = patches;
  }

  patched(key: string): boolean {
    return this.patches?.has(key) ?? false;
  }

  patch(g: GraphBuilder, key: string, w: Value): Value {
    return this.patches ? this.patches.apply(g, key, w) : w;
  }
}

export class WeightStore extends PatchableWeights implements WeightFiles {
  readonly folder: string;
  private readonly index = new Map<string, TensorFile>();

  constructor(
    readonly files: readonly TensorFile[],
    readonly component: string,
  ) {
    super();
    if (files.length === 0) throw new Error(`${component}: no weight files`);
    this.folder = dirname(files[0]!.path);
    for (const f of files) {
      if (dirname(f.path) !== this.folder) throw new Error(`${component}: weight files must share one folder (${f.path})`);
      for (const name of f.tensors.keys()) this.index.set(name, f);
    }
  }

  static open(paths: readonly string[], component: string): WeightStore {
    return new WeightStore(paths.map((p) => openWeightsFile(p)), component);
  }

  get(key: string, expectShape?: readonly number[]): WeightRef {
    const file = this.index.get(key);
    if (!file) {
      throw new Error(
        `${this.component}: weight "${key}" is missing from ${this.files.map((f) => basename(f.path)).join(', ')}; ` +
          `the weights do not match the component's config.json (wrong folder, or a checkpoint of another architecture)`,
      );
    }
    const t = file.info(key);
    const stored = storedWeight(file, t, `${this.component}: weight "${key}"`);
    if (expectShape && (expectShape.length !== t.shape.length || expectShape.some((d, i) => d !== t.shape[i]))) {
      throw new Error(
        `${this.component}: weight "${key}" has shape [${t.shape.join(', ')}] but the config implies [${expectShape.join(', ')}]`,
      );
    }
    return { ...stored, shape: t.shape };
  }

  /** Size and modification time of every file, and the patches: part of the graph cache key. */
  fingerprint(): string {
    const files = this.files.map((f) => {
      const s = statSync(f.path);
      return `${f.path}:${s.size}:${s.mtimeMs}`;
    });
    const patches = this.patches?.fingerprint();
    return [...files, ...(patches ? [`patches:${patches}`] : [])].join('|');
  }
}

/** Answers every lookup with a placeholder and records the key and shape: a model's weight layout. */
export class WeightRecorder implements WeightSource {
  readonly shapes = new Map<string, number[]>();

  get(key: string, expectShape?: readonly number[]): WeightRef {
    if (!expectShape) throw new Error(`weight "${key}" was asked for without a shape`);
    this.shapes.set(key, [...expectShape]);
    return { file: 'recorded.safetensors', offset: 0, length: 0, shape: [...expectShape], type: 'float32' };
  }
}
