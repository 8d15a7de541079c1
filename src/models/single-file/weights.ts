/**
 * One component's weights inside a single-file checkpoint, looked up by their diffusers /
 * transformers names. A slot says where a diffusers tensor lives in the checkpoint: a whole
 * tensor, a block of rows of one (OpenCLIP's fused q/k/v), or its transpose. Graph
 * initializers point at those byte ranges: nothing is copied or rewritten.
 */
import { statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { PatchableWeights, storedWeight, type WeightFiles, type WeightRef } from '../../graph/weights.js';
import type { TensorFile } from '../../io/tensor-file.js';
import { UserError } from '../../errors.js';

export interface CheckpointSlot {
  /** The tensor's name in the checkpoint. */
  key: string;
  /** Rows [start, start + count) of the first axis. */
  rows?: { start: number; count: number };
  /** Stored as the transpose of the diffusers tensor (2-D). */
  transposed?: boolean;
}

/** `a` equals `b` once trailing 1-sized axes are dropped (a 1×1 conv kernel used as a Linear weight). */
function sameSqueezed(a: readonly number[], b: readonly number[]): boolean {
  const squeeze = (s: readonly number[]): number[] => {
    const out = [...s];
    while (out.length > 1 && out[out.length - 1] === 1) out.pop();
    return out;
  };
  const x = squeeze(a);
  const y = squeeze(b);
  return x.length === y.length && x.every((d, i) => d === y[i]);
}

export class CheckpointWeights extends PatchableWeights implements WeightFiles {
  readonly folder: string;

  constructor(
    readonly file: TensorFile,
    readonly component: string,
    /** diffusers key → where it is in the file. */
    readonly slots: ReadonlyMap<string, CheckpointSlot>,
  ) {
    super();
    this.folder = dirname(file.path);
  }

  get(key: string, expectShape?: readonly number[]): WeightRef {
    const slot = this.slots.get(key);
    if (!slot) {
      throw new UserError(
        `${this.component}: weight "${key}" has no counterpart in ${basename(this.file.path)}; ` +
          'the checkpoint holds another architecture than its keys suggested, or it is incomplete',
      );
    }
    const t = this.file.info(slot.key);
    const stored = storedWeight(this.file, t, `${this.component}: checkpoint tensor "${slot.key}"`);
    let shape = t.shape;
    let offset = stored.offset;
    let length = stored.length;
    if (slot.rows) {
      const rowBytes = t.shape[0] ? t.byteLength / t.shape[0] : 0;
      if (slot.rows.start + slot.rows.count > (t.shape[0] ?? 0)) {
        throw new UserError(`${this.component}: checkpoint tensor "${slot.key}" [${t.shape.join(', ')}] has no rows ${slot.rows.start}..${slot.rows.start + slot.rows.count - 1} (for "${key}")`);
      }
      shape = [slot.rows.count, ...t.shape.slice(1)];
      offset += slot.rows.start * rowBytes;
      length = slot.rows.count * rowBytes;
    }
    if (slot.transposed) {
      if (shape.length !== 2) throw new UserError(`${this.component}: checkpoint tensor "${slot.key}" should be a matrix; it has shape [${shape.join(', ')}]`);
      shape = [shape[1]!, shape[0]!];
    }
    if (expectShape) {
      if (!sameSqueezed(shape, expectShape)) {
        throw new UserError(
          `${this.component}: checkpoint tensor "${slot.key}" (for "${key}") has shape [${t.shape.join(', ')}] but the detected config implies [${expectShape.join(', ')}]`,
        );
      }
      shape = [...expectShape];
    }
    return { file: stored.file, offset, length, shape, type: stored.type, ...(slot.transposed ? { transposed: true } : {}) };
  }

  fingerprint(): string {
    const s = statSync(this.file.path);
    const patches = this.patches?.fingerprint();
    return `${this.file.path}:${s.size}:${s.mtimeMs}:${this.component}${patches ? `|patches:${patches}` : ''}`;
  }
}
