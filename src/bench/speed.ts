/**
 * U-Net speed: dense attention against each method at each resolution, in one process. Each
 * method is measured in alternation with dense (dense, method, method, dense, …) so that drift
 * of the machine cancels out of the ratio; every number is a median over several runs.
 */
import { denseAttention } from '../attention/dense.js';
import { checkAttentionForm, type AttentionForm } from '../attention/forms.js';
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { TODO_ACTIVE_INPUT } from '../attention/todo.js';
import { GraphBuilder } from '../graph/builder.js';
import { serializeModel } from '../graph/serialize.js';
import { WeightStore } from '../graph/weights.js';
import { findComponent } from '../io/model-folder.js';
import { buildUNetGraph, parseUNetConfig, TIME_IDS, type UNetConfig } from '../models/unet.js';
import { graphOptions } from '../runtime/graph-options.js';
import { openSession, ort, type Feed, type RuntimeOptions } from '../runtime/session.js';
import { median, peakRssMiB, resetPeak, rssMiB } from './machine.js';

export interface MethodSpec {
  /** Short name used in reports: dense, todo-2, todo-auto, todo-2-l2, tome-0.5, todo-2@chunked, … */
  label: string;
  attention: AttentionOptions;
  /** An attention form for this method only (`@mha`, `@chunked`); default the run's. */
  attentionForm?: AttentionForm;
}

/** Parses `dense`, `todo-K`, `todo-auto`, `todo-K-l2` (also factor 2 at level 2), `tome-R`, each optionally `@mha` or `@chunked`. */
export function parseMethod(label: string): MethodSpec {
  const at = /^(.*)@(.*)$/.exec(label);
  if (at) {
    const form = checkAttentionForm(at[2]!);
    if (form === 'auto') return parseMethod(at[1]!);
    return { ...parseMethod(at[1]!), label, attentionForm: form };
  }
  if (label === 'dense') return { label, attention: { method: 'dense' } };
  let m = /^todo-(auto|\d+)(-l2)?$/.exec(label);
  if (m) return { label, attention: { method: 'todo', factor: m[1] === 'auto' ? 'auto' : Number(m[1]), level2Factor: m[2] ? 2 : 1 } };
  m = /^tome-(0?\.\d+)$/.exec(label);
  if (m) return { label, attention: { method: 'tome', ratio: Number(m[1]) } };
  throw new Error(`unknown method "${label}"; use dense, todo-2, todo-3, todo-4, todo-auto, todo-2-l2 (level 2 too) or tome-0.5 (a ratio), optionally with @mha or @chunked (the attention form)`);
}

export interface Stats {
  medianMs: number;
  minMs: number;
  maxMs: number;
  runsMs: number[];
}

export interface UNetRecord {
  type: 'unet';
  size: [number, number];
  batch: number;
  method: string;
  attention: AttentionOptions;
  step: Stats;
  /** Dense runs interleaved with this method's (same as `step` for dense itself). */
  denseInterleaved: Stats;
  /** median(dense) / median(method), from the interleaved runs. */
  speedup: number;
  flops: { attention: number; other: number; total: number };
  flopIdealSpeedup: number;
  /** measured speed-up / FLOP-ideal speed-up. */
  ofIdeal: number;
  achievedGflops: number;
  /** Key/value tokens of the first self-attention (ToDo's and ToMe's target level), per image. */
  topLevelKeys: number;
  /** How many attentions took each form (attention/forms.ts). */
  attentionForms: Record<string, number>;
  buildMs: number;
  sessionMs: number;
  /** The first run, apart from the timed ones: on a GPU it compiles the shaders (0 without warm-up). */
  firstRunMs: number;
  /** The provider that ran it (after any fallback) and the compute precision. */
  provider: string;
  precision: string;
  /** Memory the session took when created (weights, pre-packed), MiB. */
  sessionMiB: number;
  /** Highest resident memory during a run above the level before it, MiB. */
  runPeakMiB: number;
  /**
   * Estimated peak of a process holding only this method: process base + the first session's
   * memory (every method holds the same weights; later sessions reuse freed pages, so their own
   * increase understates them) + this method's run peak, MiB.
   */
  peakMiB: number;
}

export interface SpeedOptions extends RuntimeOptions {
  model: string;
  sizes: [number, number][];
  batch: number;
  methods: MethodSpec[];
  runs: number;
  warmup: number;
  /** Stop cleanly, keeping what was measured, once this many seconds have passed. */
  maxSeconds?: number;
  /**
   * Hold one session at a time (models whose weights fit in memory only once, such as SDXL in
   * fp32): each ToDo method runs in a graph that switches between ToDo and dense attention
   * (ToDo's `stopAt` switch), and dense is timed in that same session with the switch off.
   */
  oneSession?: boolean;
  onLog?: (m: string) => void;
}

interface Loaded {
  session: ort.InferenceSession;
  provider: string;
  precision: string;
  firstRunMs: number;
  feeds: Record<string, ort.Tensor>;
  flops: { attention: number; other: number };
  topLevelKeys: number;
  attentionForms: Record<string, number>;
  buildMs: number;
  sessionMs: number;
  sessionMiB: number;
}

/** Fixed, input-like values (speed does not depend on them). */
export function deterministic(n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * scale);
}

function toOrt(f: Feed): ort.Tensor {
  return f.type === 'float32' ? new ort.Tensor('float32', f.value.data, [...f.value.dims]) : new ort.Tensor(f.type, f.data, [...f.dims]);
}

/** Key/value tokens of the first self-attention, i.e. at the first level that has attention (ToDo's and ToMe's target). */
function firstSelfAttentionKeys(g: GraphBuilder): number {
  return g.attentionCalls.find((a) => a.scope.endsWith('attn1'))?.keys ?? 0;
}

async function load(cfg: UNetConfig, weights: WeightStore, size: [number, number], batch: number, attention: AttentionOptions, rt: RuntimeOptions): Promise<Loaded> {
  const [h, w] = [size[0] / 8, size[1] / 8];
  const t0 = performance.now();
  const variant = resolveAttention(attention).variant({ latent: [h, w] });
  const graph = graphOptions(rt);
  const g = buildUNetGraph(cfg, weights, { batch, height: h, width: w, textLength: 77 }, variant, graph);
  const bytes = serializeModel(g.build());
  const t1 = performance.now();
  const before = rssMiB();
  const { session, provider } = await openSession(bytes, weights.folder, rt);
  const t2 = performance.now();
  const feeds: Record<string, ort.Tensor> = {
    sample: new ort.Tensor('float32', deterministic(batch * cfg.inChannels * h * w, 1), [batch, cfg.inChannels, h, w]),
    timestep: new ort.Tensor('float32', new Float32Array(batch).fill(500), [batch]),
    encoder_hidden_states: new ort.Tensor('float32', deterministic(batch * 77 * cfg.crossAttentionDim, 0.5), [batch, 77, cfg.crossAttentionDim]),
  };
  if (cfg.textTime) {
    const p = cfg.textTime.textEmbedDim;
    feeds.text_embeds = new ort.Tensor('float32', deterministic(batch * p, 0.5), [batch, p]);
    const ids = [size[0], size[1], 0, 0, size[0], size[1]];
    feeds.time_ids = new ort.Tensor('float32', Float32Array.from({ length: batch * TIME_IDS }, (_, i) => ids[i % TIME_IDS]!), [batch, TIME_IDS]);
  }
  for (const f of variant.feeds({ active: true })) feeds[f.name] = toOrt(f);
  return { session, provider, precision: graph.precision, firstRunMs: 0, feeds, flops: g.flops, topLevelKeys: firstSelfAttentionKeys(g), attentionForms: countForms(g.attentionCalls.map((c) => c.form.form)), buildMs: t1 - t0, sessionMs: t2 - t1, sessionMiB: rssMiB() - before };
}

/** [dense, method] over one session: a ToDo graph with its dense switch off and on (see SpeedOptions.oneSession). */
async function loadSwitchable(cfg: UNetConfig, weights: WeightStore, size: [number, number], batch: number, attention: AttentionOptions, rt: RuntimeOptions): Promise<[Loaded, Loaded]> {
  if (attention.method !== 'todo') throw new Error(`one-session benchmarks switch ToDo off inside its own graph; "${attention.method}" has no such switch (run it without --one-session)`);
  const m = await load(cfg, weights, size, batch, { ...attention, stopAt: 0.5 }, rt);
  const dense = buildUNetGraph(cfg, weights, { batch, height: size[0] / 8, width: size[1] / 8, textLength: 77 }, denseAttention);
  // A factor that resolves to 1 here leaves no switch: then both views run the same dense graph.
  const off = TODO_ACTIVE_INPUT in m.feeds ? { ...m.feeds, [TODO_ACTIVE_INPUT]: new ort.Tensor('bool', Uint8Array.of(0), [1]) } : m.feeds;
  return [{ ...m, feeds: off, flops: dense.flops, topLevelKeys: firstSelfAttentionKeys(dense), attentionForms: countForms(dense.attentionCalls.map((c) => c.form.form)) }, m];
}

function countForms(forms: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of forms) out[f] = (out[f] ?? 0) + 1;
  return out;
}

/** The warm-up runs; the first one's time is kept apart (shader compilation on a GPU). Returns the last one's. */
async function warmUp(l: Loaded, runs: number): Promise<number> {
  let ms = 0;
  for (let i = 0; i < runs; i++) {
    ms = (await timeRun(l)).ms;
    if (i === 0) l.firstRunMs = ms;
  }
  return ms;
}

async function timeRun(l: Loaded): Promise<{ ms: number; peakMiB: number }> {
  const before = rssMiB();
  resetPeak();
  const t0 = performance.now();
  await l.session.run(l.feeds);
  const ms = performance.now() - t0;
  return { ms, peakMiB: Math.max(0, peakRssMiB() - before) };
}

/**
 * Runs dense and a method `runs` times each, interleaved (dense, method, method, dense, …) so
 * that the machine's drift cancels out of the ratio of medians.
 */
export async function interleaved<R>(runs: number, method: MethodSpec, run: (spec: MethodSpec) => Promise<R>): Promise<{ dense: R[]; method: R[] }> {
  const dense: MethodSpec = { label: 'dense', attention: { method: 'dense' } };
  const out = { dense: [] as R[], method: [] as R[] };
  for (let i = 0; i < runs; i++) {
    for (const spec of i % 2 === 0 ? [dense, method] : [method, dense]) (spec === dense ? out.dense : out.method).push(await run(spec));
  }
  return out;
}

export function stats(runs: number[]): Stats {
  return { medianMs: median(runs), minMs: Math.min(...runs), maxMs: Math.max(...runs), runsMs: runs };
}

export async function runSpeedBench(o: SpeedOptions): Promise<{ records: UNetRecord[]; stoppedEarly: boolean }> {
  const log = o.onLog ?? (() => {});
  const comp = findComponent(o.model, 'unet', { classNames: ['UNet2DConditionModel'] });
  const cfg = parseUNetConfig(comp.config);
  const weights = WeightStore.open(comp.weightFiles, 'unet');
  const deadline = o.maxSeconds ? performance.now() + o.maxSeconds * 1000 : Infinity;
  const baseMiB = rssMiB();
  let sessionMiB = NaN;
  const records: UNetRecord[] = [];
  // Any run skipped for lack of budget ends the bench after this size, and says so.
  let cut = false;
  const fits = (estimateMs: number): boolean => {
    if (performance.now() + estimateMs < deadline) return true;
    cut = true;
    return false;
  };
  const loadDense = async (size: [number, number]): Promise<Loaded> => {
    log(`${size[0]}x${size[1]}: building and loading dense`);
    const dense = await load(cfg, weights, size, o.batch, { method: 'dense' }, o);
    if (Number.isNaN(sessionMiB)) sessionMiB = dense.sessionMiB;
    return dense;
  };
  for (const size of o.sizes) {
    if (size[0] % 64 || size[1] % 64) throw new Error(`bench sizes must be multiples of 64 (the U-Net's three downsamplings of px/8); got ${size.join('x')}`);
    const standalone = o.oneSession ? undefined : await loadDense(size);
    // The dense graph the dense record describes (one-session: the first method's dense view).
    let denseRef = standalone;
    const denseAll: number[] = [];
    const atSize: UNetRecord[] = [];
    let densePeak = 0;
    // Unknown until measured: 0 lets the first run start whatever the budget left.
    let denseEstimate = 0;
    if (standalone) denseEstimate = await warmUp(standalone, o.warmup);
    for (const method of o.methods) {
      if (method.label === 'dense') continue;
      if (!fits(2 * denseEstimate)) break;
      log(`${size[0]}x${size[1]}: ${method.label}`);
      const rt = { ...o, attentionForm: method.attentionForm ?? o.attentionForm };
      const [dense, m] = standalone ? [standalone, await load(cfg, weights, size, o.batch, method.attention, rt)] : await loadSwitchable(cfg, weights, size, o.batch, method.attention, rt);
      if (Number.isNaN(sessionMiB)) sessionMiB = m.sessionMiB;
      denseRef ??= dense;
      if (!standalone) denseEstimate = await warmUp(dense, o.warmup);
      let estimate = await warmUp(m, o.warmup);
      const dRuns: number[] = [];
      const mRuns: number[] = [];
      let peak = 0;
      for (let r = 0; r < o.runs && fits(estimate + denseEstimate); r++) {
        // Alternate the order within each pair so that neither side always runs warm.
        const order = r % 2 ? [m, dense] : [dense, m];
        for (const l of order) {
          const t = await timeRun(l);
          if (l === dense) {
            dRuns.push(t.ms);
            densePeak = Math.max(densePeak, t.peakMiB);
            denseEstimate = t.ms;
          } else {
            mRuns.push(t.ms);
            peak = Math.max(peak, t.peakMiB);
            estimate = t.ms;
          }
        }
      }
      await m.session.release();
      if (mRuns.length === 0) break;
      denseAll.push(...dRuns);
      atSize.push(record(size, o.batch, method, m, stats(mRuns), stats(dRuns), dense, peak, baseMiB + sessionMiB));
      log(`${method.label}: ${(atSize.at(-1)!.step.medianMs / 1000).toFixed(2)} s, ${atSize.at(-1)!.speedup.toFixed(2)}x dense`);
    }
    // Dense on its own when no method ran (or only dense was asked for).
    let alone = standalone;
    if (denseAll.length === 0 && !standalone && fits(denseEstimate)) alone = denseRef = await loadDense(size);
    // A run that has measured nothing yet takes one dense step past the budget rather than end empty.
    const firstAnyway = (): boolean => records.length === 0 && denseAll.length === 0;
    while (alone && denseAll.length < o.runs && (fits(denseEstimate) || firstAnyway())) {
      const t = await timeRun(alone);
      denseAll.push(t.ms);
      densePeak = Math.max(densePeak, t.peakMiB);
      denseEstimate = t.ms;
    }
    if (alone) await alone.session.release();
    if (denseAll.length && denseRef) {
      const s = stats(denseAll);
      records.push(record(size, o.batch, { label: 'dense', attention: { method: 'dense' } }, denseRef, s, s, denseRef, densePeak, baseMiB + sessionMiB));
    }
    records.push(...atSize);
    if (cut || performance.now() >= deadline) return { records, stoppedEarly: true };
  }
  return { records, stoppedEarly: false };
}

function record(size: [number, number], batch: number, method: MethodSpec, m: Loaded, step: Stats, denseRuns: Stats, dense: Loaded, runPeakMiB: number, residentMiB: number): UNetRecord {
  const total = m.flops.attention + m.flops.other;
  const denseTotal = dense.flops.attention + dense.flops.other;
  const speedup = denseRuns.medianMs / step.medianMs;
  const ideal = denseTotal / total;
  return {
    type: 'unet',
    size,
    batch,
    method: method.label,
    attention: method.attention,
    step,
    denseInterleaved: denseRuns,
    speedup,
    flops: { ...m.flops, total },
    flopIdealSpeedup: ideal,
    ofIdeal: speedup / ideal,
    achievedGflops: total / step.medianMs / 1e6,
    topLevelKeys: m.topLevelKeys,
    attentionForms: m.attentionForms,
    buildMs: m.buildMs,
    sessionMs: m.sessionMs,
    firstRunMs: m.firstRunMs,
    provider: m.provider,
    precision: m.precision,
    sessionMiB: m.sessionMiB,
    runPeakMiB,
    peakMiB: residentMiB + runPeakMiB,
  };
}

export interface MatMulRecord {
  type: 'matmul';
  n: number;
  step: Stats;
  gflops: number;
}

/** onnxruntime's own large square MatMul, the ceiling the U-Net's GFLOP/s is compared with. */
export async function runMatMulBench(n: number, runs: number, rt: RuntimeOptions = {}): Promise<MatMulRecord> {
  const g = new GraphBuilder('matmul', undefined, undefined, { precision: rt.precision });
  const a = g.toCompute(g.input('a', [n, n]));
  const b = g.toCompute(g.input('b', [n, n]));
  g.output(g.matmul(a, b), 'c');
  const { session } = await openSession(serializeModel(g.build()), undefined, rt);
  const feeds = { a: new ort.Tensor('float32', deterministic(n * n, 1), [n, n]), b: new ort.Tensor('float32', deterministic(n * n, 0.5), [n, n]) };
  await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  await session.release();
  const s = stats(times);
  return { type: 'matmul', n, step: s, gflops: (2 * n ** 3) / s.medianMs / 1e6 };
}
