/**
 * The denoising loop with its state on the device: latents, text embeddings and the U-Net's
 * output stay in GPU buffers from the first step to the last, and the guidance combine and
 * scheduler update run as a small graph beside the U-Net (step-graph.ts). Per step only the
 * timestep (B floats) and the step's four coefficients go up; nothing comes back until the
 * final latents. On the CPU provider the same code runs on CPU tensors, which is how it is
 * tested against the JavaScript loop.
 */
import { todoActiveAt } from '../attention/todo.js';
import { serializeModel } from '../graph/serialize.js';
import type { UNet } from '../models/unet.js';
import { DeviceTransfers, release } from '../runtime/device-tensors.js';
import { openSession, ort, type OpenedSession } from '../runtime/session.js';
import type { TimestepSpacing } from '../scheduler/config.js';
import type { SamplerName } from '../scheduler/index.js';
import type { Tensor } from '../tensor.js';
import type { Conditioning } from './conditioning-sdxl.js';
import { classifierFreeGuidance } from './guidance-embedding.js';
import { buildStepGraph, linearSchedule, stepCoefficients, STEP_COEFFICIENTS } from './step-graph.js';

export interface DeviceLoopInput {
  unet: UNet;
  sampler: SamplerName;
  schedulerConfig: object;
  karras: boolean;
  timestepSpacing?: TimestepSpacing;
  steps: number;
  /** Initial latents, already scaled by the scheduler's init sigma. */
  latents: Tensor;
  /** Text conditioning, uncond half first when guided (SDXL's pooled text and time ids in `added`). */
  conditioning: Conditioning;
  cfg: number;
  /** A guidance-distilled U-Net's guidance embedding (guidance-embedding.ts). */
  timestepCond?: Tensor;
  /** ToDo's stopAt: attention goes dense after this fraction of the steps. */
  stopAt: number;
  onStep?: (step: number, total: number, timestep: number) => void;
}

/** Whether the loop runs on the device: asked for, or by default on a GPU provider. */
export function deviceLoopWanted(unet: UNet): boolean {
  return unet.runtime.deviceLoop ?? (unet.runtime.executionProvider ?? 'cpu') !== 'cpu';
}

/**
 * Runs the whole denoising loop on the device and returns the final latents, or null when the
 * sampler cannot run as a graph (then the caller runs its JavaScript loop).
 */
export async function denoiseOnDevice(o: DeviceLoopInput): Promise<Tensor | null> {
  const schedule = linearSchedule(o.sampler, o.schedulerConfig, o.steps, { karras: o.karras, timestepSpacing: o.timestepSpacing });
  if (!schedule) return null;
  const guided = classifierFreeGuidance(o.cfg, o.unet.config);
  const dims = o.latents.dims;
  const rt = o.unet.runtime;
  const transfers = new DeviceTransfers(rt);
  // What is held on the device at any moment, freed whatever happens.
  const held: { step?: OpenedSession; x?: ort.Tensor; input?: ort.Tensor; text?: ort.Tensor } = {};
  try {
    const step = (held.step = await openSession(serializeModel(buildStepGraph(dims, guided)), undefined, rt, true));
    const scaled = o.latents.data.map((v) => v * schedule[0]!.inputScale);
    let x = (held.x = await transfers.upload(o.latents));
    let input = (held.input = await transfers.upload({ data: guided ? concat(scaled, scaled) : scaled, dims: [(guided ? 2 : 1) * dims[0]!, ...dims.slice(1)] }));
    const text = (held.text = await transfers.upload(o.conditioning.encoderHiddenStates));
    const added = o.conditioning.added;
    for (const [i, s] of schedule.entries()) {
      const eps = await o.unet.forwardOnDevice(input, s.timestep, text, { attentionActive: todoActiveAt(o.stopAt, i, schedule.length), ...added, timestepCond: o.timestepCond });
      const coef = new ort.Tensor('float32', stepCoefficients(s, schedule[i + 1], o.cfg), [STEP_COEFFICIENTS]);
      const out: Record<string, ort.Tensor> = await step.session.run({ noise_pred: eps, latents: x, coef });
      release(eps, x, input);
      x = held.x = out.latents_next!;
      input = held.input = out.model_input_next!;
      o.onStep?.(i + 1, schedule.length, s.timestep);
    }
    return await transfers.download(x);
  } finally {
    release(held.x, held.input, held.text);
    await held.step?.session.release();
    await transfers.dispose();
  }
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
