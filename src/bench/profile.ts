/**
 * Where a U-Net step spends its time: the U-Net (any: SD 1.x/2.x, SDXL with its added inputs, a
 * guidance-distilled one) run under onnxruntime's profiler at a size and batch, the last of a few
 * runs read (the first ones warm the allocator up), node times summed by operator type and by
 * U-Net part (each node is named after the diffusers module it belongs to), and the math rate:
 * the graph builder's FLOPs of each MatMul, Conv and attention node over its time, per operator
 * and over the whole run.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import { serializeModel } from '../graph/serialize.js';
import { WeightStore } from '../graph/weights.js';
import { findComponent } from '../io/model-folder.js';
import { buildUNetGraph, parseUNetConfig } from '../models/unet.js';
import { createSession, ort, type RuntimeOptions } from '../runtime/session.js';

export interface ProfileRecord {
  type: 'profile';
  size: [number, number];
  batch: number;
  method: string;
  attention: AttentionOptions;
  /** Wall time of the profiled run and the sum of node times, ms. */
  runMs: number;
  nodeMs: number;
  /** The graph's FLOPs (multiply-add = 2), and that over the run's wall time. */
  gflop: number;
  gflopPerS: number;
  /** Per operator type; `gflopPerS` where its nodes' FLOPs are counted (MatMul, Conv, MultiHeadAttention). */
  byOp: { op: string; ms: number; gflop?: number; gflopPerS?: number }[];
  /** Self-attention (attn1) of level 0, other attention, ToMe's matching, and the rest. */
  byPart: { part: string; ms: number }[];
}

interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args: { op_name?: string };
}

/**
 * The output value a profiled kernel computes, as the builder named it: onnxruntime's kernel
 * names are the node's (`<output>__node`), a fusion's inside it (`<output>__node/MatMulAddFusion`),
 * or its NCHWc rewrite's (`<output>_nchwc`).
 */
function outputOf(kernel: string): string {
  const name = kernel.replace(/_kernel_time$/, '');
  const at = name.indexOf('__node');
  return at >= 0 ? name.slice(0, at) : name.replace(/_nchwc$/, '');
}

/** Deterministic, bounded input data: a timestep of 500, smooth values elsewhere. */
function feedFor(name: string, dims: readonly number[]): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = name === 'timestep' ? new Float32Array(n).fill(500) : Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 0.5);
  return new ort.Tensor('float32', data, [...dims]);
}

function part(node: string, op: string): string {
  if (op === 'MultiHeadAttention') return node.includes('.attn1/') ? 'self-attention kernels (attn1)' : 'cross-attention kernels (attn2)';
  if (node.includes('.attn1/')) return 'attn1 projections, ToDo downsampling, ToMe merge/un-merge';
  if (node.includes('.attn2/') || node.includes('.ff/')) return 'attn2 projections, feed-forward';
  if (/transformer_blocks\.\d+\//.test(node)) return 'ToMe matching';
  if (op === 'Conv' || node.includes('resnets') || node.includes('samplers')) return 'ResNet blocks, convolutions';
  return 'other (norms, projections in/out, reshapes, time embedding)';
}

export async function profileUNet(model: string, size: [number, number], method: string, attention: AttentionOptions, rt: RuntimeOptions = {}, o: { batch?: number; runs?: number } = {}): Promise<ProfileRecord> {
  const batch = o.batch ?? 1;
  const runs = o.runs ?? 2;
  const comp = findComponent(model, 'unet', { classNames: ['UNet2DConditionModel'] });
  const cfg = parseUNetConfig(comp.config);
  const weights = WeightStore.open(comp.weightFiles, 'unet');
  const [w, h] = [size[0] / 8, size[1] / 8];
  const variant = resolveAttention(attention).variant({ latent: [h, w] });
  const builder = buildUNetGraph(cfg, weights, { batch, height: h, width: w, textLength: 77 }, variant);
  const graph = builder.build();
  const prefix = join(tmpdir(), `todo-sd-profile-${process.pid}`);
  const session = await createSession(serializeModel(graph), weights.folder, { ...rt, profilePrefix: prefix });
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of graph.inputs) feeds[i.name] = feedFor(i.name, i.shape);
  for (const f of variant.feeds({ active: true })) if (f.type !== 'float32') feeds[f.name] = new ort.Tensor(f.type, f.data, [...f.dims]);
  let runMs = 0;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await session.run(feeds);
    runMs = performance.now() - t0;
  }
  // The profile file is named by onnxruntime: prefix + date; endProfiling does not return it in Node.
  session.endProfiling();
  await session.release();
  const dir = tmpdir();
  const file = readdirSync(dir).filter((f) => f.startsWith(`todo-sd-profile-${process.pid}`)).map((f) => join(dir, f))[0];
  if (!file) throw new Error('onnxruntime wrote no profile');
  const trace = JSON.parse(readFileSync(file, 'utf8')) as TraceEvent[];
  rmSync(file, { force: true });
  const lastRun = Math.max(...trace.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => e.ts));
  const events = trace.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= lastRun);
  const nodeFlops = builder.flopsByNode;
  const byOp = new Map<string, { ms: number; flops: number }>();
  const byPart = new Map<string, number>();
  for (const e of events) {
    const op = e.args.op_name ?? '?';
    const entry = byOp.get(op) ?? { ms: 0, flops: 0 };
    entry.ms += e.dur / 1000;
    entry.flops += nodeFlops.get(outputOf(e.name)) ?? 0;
    byOp.set(op, entry);
    const p = part(e.name, op);
    byPart.set(p, (byPart.get(p) ?? 0) + e.dur / 1000);
  }
  const flops = builder.flops.attention + builder.flops.other;
  return {
    type: 'profile',
    size,
    batch,
    method,
    attention,
    runMs,
    nodeMs: [...byOp.values()].reduce((a, b) => a + b.ms, 0),
    gflop: flops / 1e9,
    gflopPerS: flops / 1e9 / (runMs / 1000),
    byOp: [...byOp]
      .sort((a, b) => b[1].ms - a[1].ms)
      .map(([op, e]) => ({ op, ms: e.ms, ...(e.flops > 0 && { gflop: e.flops / 1e9, gflopPerS: e.flops / 1e9 / (e.ms / 1000) }) })),
    byPart: [...byPart].sort((a, b) => b[1] - a[1]).map(([p, ms]) => ({ part: p, ms })),
  };
}
