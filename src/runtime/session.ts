/**
 * onnxruntime sessions: execution-provider choice with a clear fallback, graphs loaded from
 * memory with their weights read from the model's own folder.
 */
import ort from 'onnxruntime-node';
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
  onWarning?: (message: string) => void;
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
  const ep = checkExecutionProvider(opts.executionProvider ?? 'cpu');
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
    ...(opts.profilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profilePrefix } : {}),
    ...(weightsFolder ? { extra: { session: { model_external_initializers_file_folder_path: weightsFolder } } } : {}),
  };
  if (ep !== 'cpu') {
    try {
      return await ort.InferenceSession.create(model, { ...base, executionProviders: [ep, 'cpu'] });
    } catch (e) {
      const warn = opts.onWarning ?? ((m: string) => console.warn(m));
      warn(`execution provider "${ep}" is not available here (${firstLine(e)}); falling back to the CPU`);
    }
  }
  return ort.InferenceSession.create(model, { ...base, executionProviders: ['cpu'] });
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!;
}

export { ort };
