/**
 * Progress of the slow work outside the denoising steps: reading a component, building its
 * graph, creating its onnxruntime session, encoding the prompt, VAE encoding and decoding.
 * Graphs and sessions are made lazily, so these phases happen at load time and again inside the
 * first step at a new size or attention method; a pipeline relays them to every listener.
 */

/** One phase, reported as it starts and as it ends. */
export interface PhaseEvent {
  /** `<kind>:<part>`: `load:unet`, `graph:unet`, `session:vae_decoder`, `encode:prompt`, `decode:vae`, … */
  phase: string;
  state: 'start' | 'end';
  /** Milliseconds since the phase started: 0 at its start, its duration at its end. */
  elapsedMs: number;
}

export type ProgressListener = (event: PhaseEvent) => void;

const KINDS: Record<string, string> = {
  load: 'load',
  graph: 'build graph:',
  session: 'create session:',
  encode: 'encode',
  decode: 'decode',
  probe: 'start provider',
};

/** A phase for people: `graph:unet` → "build graph: unet", `decode:vae` → "decode vae". */
export function phaseLabel(phase: string): string {
  const i = phase.indexOf(':');
  if (i < 0) return phase;
  const kind = phase.slice(0, i);
  return `${KINDS[kind] ?? kind} ${phase.slice(i + 1)}`;
}

/** Runs `fn` as the phase `phase` (synchronous work: the listener hears its start before it blocks). */
export function phaseSync<T>(listener: ProgressListener | undefined, phase: string, fn: () => T): T {
  if (!listener) return fn();
  const t0 = performance.now();
  listener({ phase, state: 'start', elapsedMs: 0 });
  try {
    return fn();
  } finally {
    listener({ phase, state: 'end', elapsedMs: performance.now() - t0 });
  }
}

/** Runs `fn` as the phase `phase`; its end is reported whether it succeeds or fails. */
export async function phase<T>(listener: ProgressListener | undefined, phase: string, fn: () => Promise<T>): Promise<T> {
  if (!listener) return fn();
  const t0 = performance.now();
  listener({ phase, state: 'start', elapsedMs: 0 });
  try {
    return await fn();
  } finally {
    listener({ phase, state: 'end', elapsedMs: performance.now() - t0 });
  }
}

/**
 * Hands a pipeline's phases to the listener given at load time and to the one of the call in
 * progress (a generate call's), so lazily built graphs are heard by whoever waits on them.
 */
export class ProgressRelay {
  private readonly listeners = new Set<ProgressListener>();

  constructor(listener?: ProgressListener) {
    if (listener) this.listeners.add(listener);
  }

  readonly emit: ProgressListener = (e) => {
    for (const l of this.listeners) l(e);
  };

  /** `listener` also hears the phases while `fn` runs. */
  async during<T>(listener: ProgressListener | undefined, fn: () => Promise<T>): Promise<T> {
    if (!listener || this.listeners.has(listener)) return fn();
    this.listeners.add(listener);
    try {
      return await fn();
    } finally {
      this.listeners.delete(listener);
    }
  }
}
