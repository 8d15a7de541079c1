/**
 * onnxruntime sessions: execution-provider choice with a clear fallback, graphs loaded from
 * memory with their weights read from the model's own folder.
 */
import ort from 'onnxruntime-node';
import type { AttentionForm } from '../attention/forms.js';
import type { Precision } from '../graph/precision.js';
import type { ProgressListener } from './progress.js';
import type { Tensor } from '../tensor.js';

/** One graph input's value for a run. */
export type Feed =
  | { name: string; type: 'float32'; value: Tensor }
  | { name: string; type: 'int64' | 'int32' | 'bool'; data: BigInt64Array | Int32Array | Uint8Array; dims: readonly number[] };

export const EXECUTION_PROVIDERS = ['cpu', 'webgpu', 'cuda', 'tensorrt'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export interface RuntimeOptions {
  /** 'cpu' (default), 'webgpu', 'cuda' or 'tensorrt'; a missing one falls back to the CPU with a warning. */
  executionProvider?: string;
  /** Threads for one operator; default: onnxruntime's choice (all cores). */
  threads?: number;
  /** Write onnxruntime's per-node profile (JSON) with this file prefix. */
  profilePrefix?: string;
  /** Compute precision of the U-Net and text encoder (the VAE follows its config's force_upcast); default fp16 on a GPU provider, fp32 on the CPU. */
  precision?: Precision;
  /** How attention is computed; default 'auto' picks per provider and shape (see attention/forms.ts). */
  attentionForm?: AttentionForm | 'auto';
  /**
   * Keep the denoising loop's tensors (latents, text embeddings, U-Net outputs) on the device
   * and run the guidance combine and scheduler update as a graph there (Euler, DDIM); default:
   * on a GPU provider.
   */
  deviceLoop?: boolean;
  onWarning?: (message: string) => void;
  /** Hears the slow phases: loading, graph building and session creation (see runtime/progress.ts). */
  onProgress?: ProgressListener;
}

export function checkExecutionProvider(name: string): ExecutionProvider {
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(name)) {
    throw new Error(`unknown execution provider "${name}"; use one of ${EXECUTION_PROVIDERS.join(', ')}`);
  }
  return name as ExecutionProvider;
}

/** Creates a session for a serialized graph whose external weights live in `weightsFolder`. */
export async function createSession(
  model: Uint8Array,
  weightsFolder: string | undefined,
  opts: RuntimeOptions = {},
): Promise<ort.InferenceSession> {
  return (await openSession(model, weightsFolder, opts)).session;
}

export interface OpenedSession {
  session: ort.InferenceSession;
  /** The provider that runs it: the one asked for, or 'cpu' after a fallback. */
  provider: ExecutionProvider;
  /** Whether its outputs stay on the device (WebGPU buffers that later runs take as inputs). */
  outputsOnDevice: boolean;
  /** Why the asked-for provider was not used, after a fallback. */
  fallback?: string;
}

/**
 * createSession, saying which provider it got. With `outputsOnDevice`, a WebGPU session leaves
 * its outputs in GPU buffers (onnxruntime-node's `preferredOutputLocation: 'gpu-buffer'`);
 * other providers return CPU tensors as usual.
 */
export async function openSession(
  model: Uint8Array,
  weightsFolder: string | undefined,
  opts: RuntimeOptions = {},
  outputsOnDevice = false,
  activationArena = true,
): Promise<OpenedSession> {
  const ep = checkExecutionProvider(opts.executionProvider ?? 'cpu');
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    ...(activationArena ? {} : { enableCpuMemArena: false }),
    ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
    ...(opts.profilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profilePrefix } : {}),
    ...(weightsFolder ? { extra: { session: { model_external_initializers_file_folder_path: weightsFolder } } } : {}),
  };
  if (ep !== 'cpu') {
    const onDevice = outputsOnDevice && ep === 'webgpu';
    try {
      const session = await ort.InferenceSession.create(model, {
        ...base,
        executionProviders: [ep, 'cpu'],
        ...(onDevice ? { preferredOutputLocation: 'gpu-buffer' as const } : {}),
      });
      return { session, provider: ep, outputsOnDevice: onDevice };
    } catch (e) {
      const fallback = `execution provider "${ep}" is not available here (${firstLine(e)}); falling back to the CPU`;
      warnOnce(opts.onWarning, fallback);
      return { session: await ort.InferenceSession.create(model, { ...base, executionProviders: ['cpu'] }), provider: 'cpu', outputsOnDevice: false, fallback };
    }
  }
  return { session: await ort.InferenceSession.create(model, { ...base, executionProviders: ['cpu'] }), provider: 'cpu', outputsOnDevice: false };
}

const consoleWarn = (m: string): void => console.warn(m);
const warned = new WeakMap<(m: string) => void, Set<string>>();

/** Each message once per warning sink: a pipeline opens many sessions. */
export function warnOnce(sink: ((m: string) => void) | undefined, message: string): void {
  const warn = sink ?? consoleWarn;
  const seen = warned.get(warn) ?? new Set<string>();
  if (!seen.has(message)) warn(message);
  warned.set(warn, seen.add(message));
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!;
}

export { ort };
