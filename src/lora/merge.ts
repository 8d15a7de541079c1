/**
 * LoRA merged at graph build time: W′ = W + Σ reshape((scale · alpha / rank · up) · down, W.shape).
 * W stays external data in the model's own file; up and down become small constants of the graph
 * and onnxruntime folds the sum into W once, when it creates the session. Nothing merged is
 * written to disk, and the graph protobuf grows by the LoRA's size only.
 */
import { resolve } from 'node:path';
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { WeightPatches } from '../graph/weights.js';
import { LoraFile, type LoraComponent } from './file.js';
import type { LoraTargets } from './names.js';
import { UserError } from '../errors.js';

/** A LoRA to apply: a file and its weight (A1111's multiplier). */
export interface LoraSpec {
  path: string;
  scale: number;
  /** The U-Net's weight when it differs from the text encoders' (A1111's `<lora:name:te:unet>`). */
  unetScale?: number;
}

export interface LoadedLora {
  file: LoraFile;
  scale: number;
  unetScale?: number;
}

/** One module's delta: `up` already multiplied by scale · alpha / rank. */
interface LowRankDelta {
  up: Float32Array;
  down: Float32Array;
  rank: number;
}

const COMPONENT_NAMES: Record<LoraComponent, string> = {
  unet: 'U-Net',
  text_encoder: 'text encoder',
  text_encoder_2: 'second text encoder (SDXL)',
};

export function componentName(c: LoraComponent): string {
  return COMPONENT_NAMES[c];
}

function checkScale(scale: number, what: string): void {
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new UserError(`${what}: the LoRA weight must be a finite number; got ${scale}`);
}

/** Checks a spec and opens its file (the header only): a missing file or one that is no LoRA fails here. */
export function loadLora(s: LoraSpec, open: (path: string) => LoraFile = LoraFile.open): LoadedLora {
  if (!s || typeof s.path !== 'string') throw new UserError(`a LoRA is given as { path, scale }; got ${JSON.stringify(s)}`);
  checkScale(s.scale, `LoRA ${s.path}`);
  if (s.unetScale !== undefined) checkScale(s.unetScale, `LoRA ${s.path}`);
  return { file: open(resolve(s.path)), scale: s.scale, unetScale: s.unetScale };
}

export function openLoras(specs: readonly LoraSpec[]): LoadedLora[] {
  return specs.map((s) => loadLora(s));
}

/** The LoRA deltas of one component, applied by the graph builder to each weight it loads. */
export class LoraPatches implements WeightPatches {
  constructor(
    private readonly deltas: ReadonlyMap<string, readonly LowRankDelta[]>,
    private readonly id: string,
  ) {}

  has(key: string): boolean {
    return this.deltas.has(key);
  }

  apply(g: GraphBuilder, key: string, w: Value): Value {
    const list = this.deltas.get(key);
    if (!list) return w;
    const out = w.dim(0);
    const inner = w.shape.slice(1).reduce((a, b) => a * b, 1);
    let merged = w;
    for (const d of list) {
      const up = g.constant(d.up, [out, d.rank]);
      const down = g.constant(d.down, [d.rank, inner]);
      // Emitted without FLOP counting: every input is constant, so it is folded at session creation.
      const product = g.op('MatMul', [up, down], {}, [out, inner]);
      merged = g.add(merged, w.rank === 2 ? product : g.reshape(product, w.shape));
    }
    return merged;
  }

  fingerprint(): string {
    return this.id;
  }
}

export interface LoraResolution {
  patches: LoraPatches;
  /** Per file: its modules for this component that name no weight of it. */
  unmatched: Map<LoraFile, string[]>;
}

/**
 * Matches the modules of `loras` meant for `component` against its weights. A module whose
 * shapes do not fit the weight it names means the LoRA was made for another architecture: an
 * error, as is a file none of whose modules for this component match.
 */
export function resolveLoras(loras: readonly LoadedLora[], component: LoraComponent, targets: LoraTargets): LoraResolution {
  const deltas = new Map<string, LowRankDelta[]>();
  const unmatched = new Map<LoraFile, string[]>();
  for (const { file, scale, unetScale } of loras) {
    const weight = component === 'unet' ? (unetScale ?? scale) : scale;
    const own = file.modules.filter((m) => m.component === component);
    const missing: string[] = [];
    for (const m of own) {
      const target = targets.get(m.local);
      if (!target) {
        missing.push(m.name);
        continue;
      }
      const [out, ...rest] = target.shape;
      const rank = m.down.shape[0]!;
      const inner = rest.reduce((a, b) => a * b, 1);
      const downInner = m.down.shape.slice(1).reduce((a, b) => a * b, 1);
      if (m.up.shape[0] !== out || downInner !== inner) {
        throw new UserError(
          `LoRA ${file.name}: module ${m.name} (up [${m.up.shape.join(', ')}], down [${m.down.shape.join(', ')}]) does not fit ` +
            `the ${componentName(component)}'s ${target.key} [${target.shape.join(', ')}]: the LoRA was made for another model architecture ` +
            `(e.g. SD 1.x vs SD 2.x vs SDXL); use a LoRA trained for this model`,
        );
      }
      if (weight === 0) continue;
      const alpha = m.alpha ? file.read(m.alpha)[0]! : rank;
      const list = deltas.get(target.key) ?? [];
      const factor = Math.fround((weight * alpha) / rank);
      list.push({ up: file.read(m.up).map((v) => v * factor), down: file.read(m.down), rank });
      deltas.set(target.key, list);
    }
    if (own.length > 0 && missing.length === own.length) {
      throw new UserError(
        `LoRA ${file.name}: none of its ${own.length} ${componentName(component)} modules (${missing.slice(0, 3).join(', ')}${own.length > 3 ? ', …' : ''}) names a layer of this model: ` +
          `it was made for another model architecture; use a LoRA trained for this model`,
      );
    }
    if (missing.length > 0) unmatched.set(file, missing);
  }
  const id = loras.map((l) => `${l.file.fingerprint()}*${l.scale}${l.unetScale === undefined ? '' : `/${l.unetScale}`}`).join('|');
  return { patches: new LoraPatches(deltas, id), unmatched };
}
