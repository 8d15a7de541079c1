/**
 * Where the time goes in one model call: a U-Net (any: SD 1.x/2.x, SDXL with its added inputs, a
 * guidance-distilled one) or the VAE's decoder or encoder, run under onnxruntime's profiler at a
 * size and batch, the last of a few runs read (the first ones warm the allocator up), node times
 * summed by operator type and by part (each node is named after the diffusers module it belongs
 * to), and the math rate: the graph builder's FLOPs of each MatMul, Conv and attention node over
 * its time, per operator and over the whole run.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAttention, type AttentionOptions } from '../attention/options.js';
import type { GraphBuilder } from '../graph/builder.js';
import { serializeModel } from '../graph/serialize.js';
import { WeightStore } from '../graph/weights.js';
import { findComponent } from '../io/model-folder.js';
import { buildUNetGraph, parseUNetConfig } from '../models/unet.js';
import { buildDecoderGraph, buildEncoderGraph, parseVAEConfig } from '../models/vae.js';
import { openSession, ort, type Feed, type RuntimeOptions } from '../runtime/session.js';

/** What `bench profile --component` runs. */
export const PROFILED_COMPONENTS = ['unet', 'vae-decoder', 'vae-encoder'] as const;
export type ProfiledComponent = (typeof PROFILED_COMPONENTS)[number];

export interface ProfileRecord {
  type: 'profile';
  component: ProfiledComponent;
  /** Image size in pixels (the VAE's decoder gets its latents). */
  size: [number, number];
  batch: number;
  /** The attention method's label for a U-Net; the component's name otherwise. */
  method: string;
  attention?: AttentionOptions;
  /** Wall time of the profiled run and the sum of node times, ms. */
  runMs: number;
  nodeMs: number;
  /** The graph's FLOPs (multiply-add = 2), and that over the run's wall time. */
  gflop: number;
  gflopPerS: number;
  /** Per operator type; `gflopPerS` where its nodes' FLOPs are counted (MatMul, Conv, MultiHeadAttention). */
  byOp: { op: string; ms: number; gflop?: number; gflopPerS?: number }[];
  /** U-Net: self-attention, cross-attention, ToMe's matching, ResNets, the rest; VAE: its blocks. */
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

function unetPart(node: string, op: string): string {
  if (op === 'MultiHeadAttention') return node.includes('.attn1/') ? 'self-attention kernels (attn1)' : 'cross-attention kernels (attn2)';
  if (node.includes('.attn1/')) return 'attn1 projections, ToDo downsampling, ToMe merge/un-merge';
  if (node.includes('.attn2/') || node.includes('.ff/')) return 'attn2 projections, feed-forward';
  if (/transformer_blocks\.\d+\//.test(node)) return 'ToMe matching';
  if (op === 'Conv' || node.includes('resnets') || node.includes('samplers')) return 'ResNet blocks, convolutions';
  return 'other (norms, projections in/out, reshapes, time embedding)';
}

/** The attention variant's index inputs (ToDo's gather indices, ToMe's), fed as they are. */
type IndexFeed = Extract<Feed, { data: unknown }>;

type Measured = Omit<ProfileRecord, 'type' | 'component' | 'size' | 'batch' | 'method' | 'attention'>;

/** Runs a built graph `runs` times under the profiler and reads the last run. */
async function profileGraph(
  builder: GraphBuilder,
  weightsFolder: string,
  rt: RuntimeOptions,
  o: { runs: number; activationArena: boolean; extraFeeds?: readonly IndexFeed[] },
  partOf: (node: string, op: string) => string,
): Promise<Measured> {
  const graph = builder.build();
  const prefix = join(tmpdir(), `todo-sd-profile-${process.pid}`);
  const { session } = await openSession(serializeModel(graph), weightsFolder, { ...rt, profilePrefix: prefix }, false, o.activationArena);
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of graph.inputs) feeds[i.name] = feedFor(i.name, i.shape);
  for (const f of o.extraFeeds ?? []) feeds[f.name] = new ort.Tensor(f.type, f.data, [...f.dims]);
  let runMs = 0;
  for (let r = 0; r < o.runs; r++) {
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
    const p = partOf(e.name, op);
    byPart.set(p, (byPart.get(p) ?? 0) + e.dur / 1000);
  }
  const flops = builder.flops.attention + builder.flops.other;
  return {
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

export async function profileUNet(model: string, size: [number, number], method: string, attention: AttentionOptions, rt: RuntimeOptions = {}, o: { batch?: number; runs?: number } = {}): Promise<ProfileRecord> {
  const batch = o.batch ?? 1;
  const comp = findComponent(model, 'unet', { classNames: ['UNet2DConditionModel'] });
  const cfg = parseUNetConfig(comp.config);
  const weights = WeightStore.open(comp.weightFiles, 'unet');
  const [w, h] = [size[0] / 8, size[1] / 8];
  const variant = resolveAttention(attention).variant({ latent: [h, w] });
  const builder = buildUNetGraph(cfg, weights, { batch, height: h, width: w, textLength: 77 }, variant);
  const extraFeeds = variant.feeds({ active: true }).filter((f): f is IndexFeed => f.type !== 'float32');
  const measured = await profileGraph(builder, weights.folder, rt, { runs: o.runs ?? 2, activationArena: true, extraFeeds }, unetPart);
  return { type: 'profile', component: 'unet', size, batch, method, attention, ...measured };
}

/**
 * The VAE's decoder (latents of `size` / 8 → the image) or encoder (the image → latents), its
 * session without onnxruntime's activation arena, as the pipeline opens it.
 */
export async function profileVAE(model: string, part: 'decoder' | 'encoder', size: [number, number], rt: RuntimeOptions = {}, o: { batch?: number; runs?: number } = {}): Promise<ProfileRecord> {
  const batch = o.batch ?? 1;
  const comp = findComponent(model, 'vae', { classNames: ['AutoencoderKL'] });
  const cfg = parseVAEConfig(comp.config);
  if (size[0] % cfg.scale || size[1] % cfg.scale) throw new Error(`bench profile: the VAE takes sizes in multiples of ${cfg.scale}; got ${size.join('x')}`);
  const weights = WeightStore.open(comp.weightFiles, 'vae');
  const [w, h] = part === 'decoder' ? [size[0] / cfg.scale, size[1] / cfg.scale] : size;
  const builder = (part === 'decoder' ? buildDecoderGraph : buildEncoderGraph)(cfg, weights, { batch, height: h, width: w });
  const levels = cfg.blockOutChannels.length;
  const way = part === 'decoder' ? 'up' : 'down';
  const blocks = new Map<string, string>();
  for (let i = 0; i < levels; i++) {
    // The decoder's blocks run from the latent size up (its channels reversed), the encoder's down to it.
    const level = part === 'decoder' ? levels - 1 - i : i;
    const at = 2 ** (levels - 1 - level);
    const res = `${(size[0] / cfg.scale) * at}x${(size[1] / cfg.scale) * at}`;
    const sampler = i < levels - 1 ? ` + ${way}sampler` : '';
    blocks.set(`${way}_blocks.${i}`, `${part}.${way}_blocks.${i} (${cfg.blockOutChannels[level]} ch at ${res}${sampler})`);
  }
  const partOf = (node: string, op: string): string => {
    if (op === 'MultiHeadAttention') return 'mid_block attention kernel';
    const block = /(mid_block|up_blocks\.\d+|down_blocks\.\d+)/.exec(node)?.[1];
    if (block === 'mid_block') return `${part}.mid_block (2 ResNets, attention projections)`;
    return (block && blocks.get(block)) ?? 'conv in/out, quant convs, layout reorders';
  };
  const measured = await profileGraph(builder, weights.folder, rt, { runs: o.runs ?? 2, activationArena: false }, partOf);
  return { type: 'profile', component: `vae-${part}`, size, batch, method: `VAE ${part}`, ...measured };
}
