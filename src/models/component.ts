/**
 * What every model component shares at run time: its weights, one onnxruntime session per
 * input shape (the last one kept: a session holds a full copy of the weights), graphs from
 * the on-disk cache, and input checks that fail before onnxruntime sees a bad tensor.
 */
import type { GraphDef } from '../graph/builder.js';
import { cacheKey, cachedGraph } from '../graph/cache.js';
import { serializeModel } from '../graph/serialize.js';
import type { WeightStore } from '../graph/weights.js';
import { checkExecutionProvider, createSession, ort, type Feed, type RuntimeOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import { numel } from '../tensor.js';


export class ComponentRuntime {
  private current?: { key: string; session: Promise<ort.InferenceSession> };

  constructor(
    readonly name: string,
    readonly weights: WeightStore,
    readonly config: Record<string, unknown>,
    readonly runtime: RuntimeOptions,
  ) {
    // A misspelt provider fails at load time, not at the first run.
    checkExecutionProvider(runtime.executionProvider ?? 'cpu');
  }

  /** Runs the graph for `shapeKey`, building (or reading from the cache) and loading it on first use. */
  async run(shapeKey: unknown, build: () => GraphDef, feeds: readonly Feed[]): Promise<Record<string, ort.Tensor>> {
    const key = cacheKey({ component: this.name, config: this.config, weights: this.weights.fingerprint(), shape: shapeKey });
    if (this.current?.key !== key) {
      const old = this.current;
      this.current = undefined;
      if (old) await (await old.session).release();
      const bytes = cachedGraph(key, () => serializeModel(build()));
      this.current = { key, session: createSession(bytes, this.weights.folder, this.runtime) };
    }
    const session = await this.current.session;
    const inputs: Record<string, ort.Tensor> = {};
    for (const f of feeds) {
      inputs[f.name] =
        f.type === 'float32'
          ? new ort.Tensor('float32', f.value.data, [...f.value.dims])
          : new ort.Tensor(f.type, f.data, [...f.dims]);
    }
    return session.run(inputs);
  }

  async dispose(): Promise<void> {
    const cur = this.current;
    this.current = undefined;
    if (cur) await (await cur.session).release();
  }
}

/** Throws a readable error unless `t` is a float tensor of rank `dims.length` whose fixed axes match. */
export function checkInput(component: string, what: string, t: Tensor, dims: readonly (number | null)[], hint: string): void {
  const ok =
    t &&
    t.data instanceof Float32Array &&
    Array.isArray(t.dims) &&
    t.dims.length === dims.length &&
    dims.every((d, i) => (d === null ? Number.isInteger(t.dims[i]) && t.dims[i]! > 0 : t.dims[i] === d)) &&
    t.data.length === numel(t.dims);
  if (!ok) {
    const want = `[${dims.map((d) => d ?? '*').join(', ')}]`;
    const got = t && Array.isArray(t.dims) ? `[${t.dims.join(', ')}]` : 'no dims';
    const data = t && t.data instanceof Float32Array ? '' : ' (data must be a Float32Array)';
    throw new Error(`${component}: ${what} must have shape ${want} (${hint}); got ${got}${data}`);
  }
}
