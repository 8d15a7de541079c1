/**
 * What every model component shares at run time: its weights, one onnxruntime session per
 * input shape (the last one kept: a session holds a full copy of the weights), graphs from
 * the on-disk cache, and input checks that fail before onnxruntime sees a bad tensor.
 */
import type { GraphDef } from '../graph/builder.js';
import { cacheKey, cachedGraph } from '../graph/cache.js';
import { serializeModel } from '../graph/serialize.js';
import type { WeightFiles } from '../graph/weights.js';
import { graphOptions, type ResolvedGraphOptions } from '../runtime/graph-options.js';
import { phase, phaseSync } from '../runtime/progress.js';
import { checkExecutionProvider, openSession, ort, type Feed, type RuntimeOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import { numel } from '../tensor.js';


export class ComponentRuntime {
  private current?: { key: string; session: Promise<ort.InferenceSession> };
  /** Precision and attention forms of this component's graphs on this runtime. */
  readonly graph: ResolvedGraphOptions;

  constructor(
    readonly name: string,
    readonly weights: WeightFiles,
    readonly config: Record<string, unknown>,
    readonly runtime: RuntimeOptions,
    fp32Only = false,
  ) {
    // A misspelt provider fails at load time, not at the first run.
    checkExecutionProvider(runtime.executionProvider ?? 'cpu');
    this.graph = graphOptions(runtime, fp32Only);
  }

  /** Runs the graph for `shapeKey`, building (or reading from the cache) and loading it on first use. */
  async run(shapeKey: unknown, build: () => GraphDef, feeds: readonly Feed[]): Promise<Record<string, ort.Tensor>> {
    const inputs: Record<string, ort.Tensor> = {};
    for (const f of feeds) {
      inputs[f.name] =
        f.type === 'float32'
          ? new ort.Tensor('float32', f.value.data, [...f.value.dims])
          : new ort.Tensor(f.type, f.data, [...f.dims]);
    }
    return (await this.session(shapeKey, build, false)).run(inputs);
  }

  /**
   * Runs on onnxruntime tensors, which may live on the device, and leaves the outputs there
   * on a WebGPU session (see runtime/device-tensors.ts); elsewhere they come back as CPU tensors.
   */
  async runOnDevice(shapeKey: unknown, build: () => GraphDef, inputs: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    return (await this.session(shapeKey, build, true)).run(inputs);
  }

  /** Synchronous work of this component (`kind`: graph, …) reported as the phase `kind:name`. */
  phase<T>(kind: string, fn: () => T): T {
    return phaseSync(this.runtime.onProgress, `${kind}:${this.name}`, fn);
  }

  private async session(shapeKey: unknown, build: () => GraphDef, outputsOnDevice: boolean): Promise<ort.InferenceSession> {
    const key = cacheKey({ component: this.name, config: this.config, weights: this.weights.fingerprint(), shape: shapeKey, graph: this.graph.key });
    const sessionKey = `${key}:${outputsOnDevice}`;
    if (this.current?.key !== sessionKey) {
      const old = this.current;
      this.current = undefined;
      if (old) await (await old.session).release();
      const bytes = cachedGraph(key, () => this.phase('graph', () => serializeModel(build())));
      const opened = phase(this.runtime.onProgress, `session:${this.name}`, () => openSession(bytes, this.weights.folder, this.runtime, outputsOnDevice));
      this.current = { key: sessionKey, session: opened.then((o) => o.session) };
    }
    return this.current.session;
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
