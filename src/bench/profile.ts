/**
 * Where a U-Net step spends its time: one run under onnxruntime's profiler, node times summed
 * by operator type and by U-Net part (each node is named after the diffusers module it belongs to).
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
  method: string;
  attention: AttentionOptions;
  /** Wall time of the profiled run and the sum of node times, ms. */
  runMs: number;
  nodeMs: number;
  byOp: { op: string; ms: number }[];
  /** Self-attention (attn1) of level 0, other attention, ToMe's matching, and the rest. */
  byPart: { part: string; ms: number }[];
}

interface TraceEvent {
  cat: string;
  name: string;
  dur: number;
  args: { op_name?: string };
}

function part(node: string, op: string): string {
  if (op === 'MultiHeadAttention') return node.includes('.attn1/') ? 'self-attention kernels (attn1)' : 'cross-attention kernels (attn2)';
  if (node.includes('.attn1/')) return 'attn1 projections, ToDo downsampling, ToMe merge/un-merge';
  if (node.includes('.attn2/') || node.includes('.ff/')) return 'attn2 projections, feed-forward';
  if (/transformer_blocks\.\d+\//.test(node)) return 'ToMe matching';
  if (op === 'Conv' || node.includes('resnets') || node.includes('samplers')) return 'ResNet blocks, convolutions';
  return 'other (norms, projections in/out, reshapes, time embedding)';
}

export async function profileUNet(model: string, size: [number, number], method: string, attention: AttentionOptions, rt: RuntimeOptions = {}): Promise<ProfileRecord> {
  const comp = findComponent(model, 'unet', { classNames: ['UNet2DConditionModel'] });
  const cfg = parseUNetConfig(comp.config);
  const weights = WeightStore.open(comp.weightFiles, 'unet');
  const [h, w] = [size[0] / 8, size[1] / 8];
  const variant = resolveAttention(attention).variant({ latent: [h, w] });
  const g = buildUNetGraph(cfg, weights, { batch: 1, height: h, width: w, textLength: 77 }, variant);
  const prefix = join(tmpdir(), `todo-sd-profile-${process.pid}`);
  const session = await createSession(serializeModel(g.build()), weights.folder, { ...rt, profilePrefix: prefix });
  const feeds: Record<string, ort.Tensor> = {
    sample: new ort.Tensor('float32', Float32Array.from({ length: 4 * h * w }, (_, i) => Math.sin(i)), [1, 4, h, w]),
    timestep: new ort.Tensor('float32', Float32Array.of(500), [1]),
    encoder_hidden_states: new ort.Tensor('float32', Float32Array.from({ length: 77 * cfg.crossAttentionDim }, (_, i) => Math.cos(i) * 0.5), [1, 77, cfg.crossAttentionDim]),
  };
  for (const f of variant.feeds({ active: true })) if (f.type !== 'float32') feeds[f.name] = new ort.Tensor(f.type, f.data, [...f.dims]);
  const t0 = performance.now();
  await session.run(feeds);
  const runMs = performance.now() - t0;
  // The profile file is named by onnxruntime: prefix + date; endProfiling does not return it in Node.
  session.endProfiling();
  await session.release();
  const dir = tmpdir();
  const file = readdirSync(dir).filter((f) => f.startsWith(`todo-sd-profile-${process.pid}`)).map((f) => join(dir, f))[0];
  if (!file) throw new Error('onnxruntime wrote no profile');
  const events = (JSON.parse(readFileSync(file, 'utf8')) as TraceEvent[]).filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  rmSync(file, { force: true });
  const byOp = new Map<string, number>();
  const byPart = new Map<string, number>();
  for (const e of events) {
    const op = e.args.op_name ?? '?';
    byOp.set(op, (byOp.get(op) ?? 0) + e.dur / 1000);
    const p = part(e.name, op);
    byPart.set(p, (byPart.get(p) ?? 0) + e.dur / 1000);
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return {
    type: 'profile',
    size,
    method,
    attention,
    runMs,
    nodeMs: [...byOp.values()].reduce((a, b) => a + b, 0),
    byOp: sorted(byOp).map(([op, ms]) => ({ op, ms })),
    byPart: sorted(byPart).map(([p, ms]) => ({ part: p, ms })),
  };
}
