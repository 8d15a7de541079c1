/**
 * Tensors that stay on the device between runs. onnxruntime-node 1.30 can leave a WebGPU
 * session's outputs in GPU buffers (`preferredOutputLocation: 'gpu-buffer'`) and takes such
 * tensors as inputs of later runs of any session on the same device (IO binding), but it
 * cannot download one (`Tensor.getData()` on it throws "not implemented"). Uploads and
 * downloads therefore run through a one-node Identity graph: its input or its output is on
 * the CPU. On the CPU provider every tensor is already in JavaScript and nothing is copied.
 */
import { GraphBuilder } from '../graph/builder.js';
import { serializeModel } from '../graph/serialize.js';
import type { Tensor } from '../tensor.js';
import { openSession, ort, type OpenedSession, type RuntimeOptions } from './session.js';

function identityGraph(dims: readonly number[]): Uint8Array {
  const g = new GraphBuilder('identity');
  g.output(g.input('x', dims), 'y');
  return serializeModel(g.build());
}

export function onDevice(t: ort.Tensor): boolean {
  return t.location === 'gpu-buffer';
}

/** Frees a device tensor's buffer; CPU tensors are left to the garbage collector. */
export function release(...ts: (ort.Tensor | undefined)[]): void {
  for (const t of ts) if (t && onDevice(t)) t.dispose();
}

export class DeviceTransfers {
  private readonly sessions = new Map<string, Promise<OpenedSession>>();

  constructor(private readonly rt: RuntimeOptions) {}

  /** Whether uploads go to a device at all (a WebGPU provider was asked for). */
  get active(): boolean {
    return this.rt.executionProvider === 'webgpu';
  }

  private identity(dims: readonly number[], toDevice: boolean): Promise<OpenedSession> {
    const key = `${dims.join('x')}:${toDevice}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = openSession(identityGraph(dims), undefined, this.rt, toDevice);
      this.sessions.set(key, s);
    }
    return s;
  }

  /** A JavaScript tensor as an onnxruntime tensor, on the device where there is one. */
  async upload(t: Tensor): Promise<ort.Tensor> {
    const cpu = new ort.Tensor('float32', t.data, [...t.dims]);
    if (!this.active) return cpu;
    const { session } = await this.identity(t.dims, true);
    return (await session.run({ x: cpu })).y!;
  }

  /** Back to JavaScript. */
  async download(t: ort.Tensor): Promise<Tensor> {
    if (!onDevice(t)) return { data: t.data as Float32Array, dims: [...t.dims] };
    const { session } = await this.identity(t.dims, false);
    const y = (await session.run({ x: t })).y!;
    return { data: y.data as Float32Array, dims: [...y.dims] };
  }

  async dispose(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s).session.release();
  }
}
