/**
 * What every model component shares at run time: its weights, one onnxruntime session per
 * input shape (the last one kept, or the last few when asked: a session holds a full copy of
 * the weights), graphs from the on-disk cache, and input checks that fail before onnxruntime
 * sees a bad tensor.
 */
import { resolveAttention, type AttentionOptions, type ResolvedAttention } from '../attention/options.js';
import type { GraphDef } from '../graph/builder.js';
import { cacheKey, cachedGraph } from '../graph/cache.js';
import { serializeModel } from '../graph/serialize.js';
import type { WeightFiles } from '../graph/weights.js';
import { graphOptions, type ResolvedGraphOptions } from '../runtime/graph-options.js';
import { phase, phaseSync } from '../runtime/progress.js';
import { checkExecutionProvider, openSession, ort, type Feed, type RuntimeOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import { numel } from '../tensor.js';

/** Sessions opened so far and the time spent opening them (graph build or cache read included), by component name. */
export interface SessionStarts {
  count: number;
  ms: number;
}

const starts = new Map<string, SessionStarts>();

/** Session starts by component name since the process began: benchmarks take them out of a timing. */
export function sessionStarts(): Record<string, SessionStarts> {
  return Object.fromEntries([...starts].map(([name, s]) => [name, { ...s }]));
}

/** Counts a session start of `name` that began at `t0` (its graph built or read before `open`). */
async function counted<T>(name: string, t0: number, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } finally {
    const s = starts.get(name) ?? { count: 0, ms: 0 };
    starts.set(name, { count: s.count + 1, ms: s.ms + performance.now() - t0 });
  }
}

export interface ComponentRuntimeOptions {
  /** Graphs in fp32 whatever the runtime's precision (a VAE that says force_upcast). */
  fp32Only?: boolean;
  /**
   * Keep the memory of a run's activations for the next run (onnxruntime's CPU arena; default).
   * Off for components run once per image at its full size: a 1024² VAE decode's arena holds
   * 3.6 GiB beside the U-Net's for as long as the session lives.
   */
  activationArena?: boolean;
}

export class ComponentRuntime {
  /** Open sessions by key, least recently used first. */
  private readonly open = new Map<string, Promise<ort.InferenceSession>>();
  private slots = 1;
  /** Precision and attention forms of this component's graphs on this runtime. */
  readonly graph: ResolvedGraphOptions;

  constructor(
    readonly name: string,
    readonly weights: WeightFiles,
    readonly config: Record<string, unknown>,
    readonly runtime: RuntimeOptions,
    private readonly opts: ComponentRuntimeOptions = {},
  ) {
    // A misspelt provider fails at load time, not at the first run.
    checkExecutionProvider(runtime.executionProvider ?? 'cpu');
    this.graph = graphOptions(runtime, opts.fp32Only ?? false);
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

  /**
   * How many sessions stay open at once: more than one where a loop alternates between graphs
   * (a ControlNet's whole and shallow graphs under DeepCache), each with its own copy of the weights.
   */
  async keepSessions(slots: number): Promise<void> {
    this.slots = slots;
    await this.evict(slots);
  }

  /** Closes the least recently used sessions until at most `keep` are open. */
  private async evict(keep: number): Promise<void> {
    while (this.open.size > keep) {
      const [key, session] = this.open.entries().next().value as [string, Promise<ort.InferenceSession>];
      this.open.delete(key);
      await (await session).release();
    }
  }

  /** Synchronous work of this component (`kind`: graph, …) reported as the phase `kind:name`. */
  phase<T>(kind: string, fn: () => T): T {
    return phaseSync(this.runtime.onProgress, `${kind}:${this.name}`, fn);
  }

  private async session(shapeKey: unknown, build: () => GraphDef, outputsOnDevice: boolean): Promise<ort.InferenceSession> {
    const key = cacheKey({ component: this.name, config: this.config, weights: this.weights.fingerprint(), shape: shapeKey, graph: this.graph.key });
    const sessionKey = `${key}:${outputsOnDevice}`;
    let session = this.open.get(sessionKey);
    if (session) this.open.delete(sessionKey);
    else {
      await this.evict(this.slots - 1);
      const t0 = performance.now();
      // Built here, not in the promise: a graph that cannot be built (bad options) throws to the caller and leaves no session behind.
      const bytes = cachedGraph(key, () => this.phase('graph', () => serializeModel(build())));
      session = counted(this.name, t0, async () => (await phase(this.runtime.onProgress, `session:${this.name}`, () => openSession(bytes, this.weights.folder, this.runtime, outputsOnDevice, this.opts.activationArena ?? true))).session);
    }
    this.open.set(sessionKey, session);
    return session;
  }

  async dispose(): Promise<void> {
    await this.evict(0);
  }
}

/** Graph plans by key, least recently used first: a loop may alternate between a few graphs. */
export class PlanCache<T> {
  private readonly plans = new Map<string, T>();

  constructor(private readonly size: number) {}

  get(key: string, make: () => T): T {
    let plan = this.plans.get(key);
    if (plan) this.plans.delete(key);
    else {
      plan = make();
      if (this.plans.size >= this.size) this.plans.delete(this.plans.keys().next().value!);
    }
    this.plans.set(key, plan);
    return plan;
  }

  clear(): void {
    this.plans.clear();
  }
}

/** A component whose graphs take an attention variant (the U-Net, the ControlNet): its method can be switched between runs. */
export abstract class AttentionComponent {
  protected constructor(
    protected resolved: ResolvedAttention,
    protected readonly rt: ComponentRuntime,
  ) {}

  /** The config.json as diffusers has it (for a single file, read from its tensor shapes). */
  get rawConfig(): Record<string, unknown> {
    return this.rt.config;
  }

  get attention(): ResolvedAttention {
    return this.resolved;
  }

  /** Switches the attention method; the next forward builds (or reuses from the cache) its graph. */
  setAttention(options: AttentionOptions): void {
    this.resolved = resolveAttention(options);
  }

  /** The runtime options it was loaded with (provider, precision, …). */
  get runtime(): RuntimeOptions {
    return this.rt.runtime;
  }

  dispose(): Promise<void> {
    return this.rt.dispose();
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
