/**
 * A JobRunner on a worker thread. onnxruntime creates sessions and runs graphs on the calling
 * thread, for seconds at a time (the SD 1.5 U-Net's session: ~20 s on a CPU); on the server's
 * own thread that would leave /progress, interrupt and a Redis worker's lock renewal unanswered
 * meanwhile. Jobs, progress and results cross as the JSON-safe values they already are; interrupt
 * and skip through JobControl's shared flags.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { UserError } from '../errors.js';
import type { JobProgress, JobResult, QueueJob } from './jobs.js';
import type { ModelRegistry } from './models.js';
import type { JobControl, Runner, RunnerOptions } from './runner.js';
import type { RuntimeOptions } from '../runtime/session.js';

/** What the main thread sends. */
export type ToWorker = { type: 'run'; job: QueueJob; flags: Int32Array } | { type: 'dispose' };

/** What the worker thread sends. */
export type FromWorker =
  | { type: 'progress'; progress: JobProgress }
  | { type: 'warning'; message: string }
  | { type: 'result'; result: JobResult }
  /** `user`: a UserError (bad input, a 422), which crosses as its message. */
  | { type: 'error'; message: string; user: boolean }
  | { type: 'disposed' };

export interface WorkerSetup {
  modelsDir?: string;
  /** RuntimeOptions without its callbacks (they stay on this thread). */
  runtime: Omit<RuntimeOptions, 'onWarning' | 'onProgress'>;
  options: RunnerOptions;
}

// From the sources (tests, tsx) the worker loads TypeScript through tsx, as this thread does.
const ext = extname(fileURLToPath(import.meta.url));
const ENTRY = new URL(`./runner-worker${ext}`, import.meta.url).href;
const BOOT = `const { workerData } = require('node:worker_threads');
(async () => { if (workerData.tsx) (await import(workerData.tsx)).register(); await import(workerData.entry); })();`;

export class ThreadRunner implements Runner {
  private worker?: Worker;
  /** The job in progress: one at a time, as the queues run them. */
  private pending?: { resolve: (r: JobResult) => void; reject: (e: Error) => void; onProgress: (p: JobProgress) => void };
  private disposed?: () => void;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly runtime: RuntimeOptions = {},
    private readonly options: RunnerOptions = {},
  ) {}

  private thread(): Worker {
    if (this.worker) return this.worker;
    const runtime = Object.fromEntries(Object.entries(this.runtime).filter(([, v]) => typeof v !== 'function'));
    const setup: WorkerSetup = { modelsDir: this.registry.modelsDir, runtime, options: this.options };
    const worker = new Worker(BOOT, { eval: true, workerData: { entry: ENTRY, tsx: ext === '.ts' ? import.meta.resolve('tsx/esm/api') : undefined, setup } });
    worker.on('message', (m: FromWorker) => this.receive(m));
    // A thread that dies (out of memory, a crash in onnxruntime) fails its job; the next job starts a new one.
    const lost = (why: string): void => {
      this.worker = undefined;
      this.pending?.reject(new Error(`the job's worker thread stopped (${why}); the next job starts a new one`));
      this.pending = undefined;
      this.disposed?.();
    };
    worker.on('error', (e) => lost(e.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    this.worker = worker;
    return worker;
  }

  private receive(m: FromWorker): void {
    if (m.type === 'progress') this.pending?.onProgress(m.progress);
    else if (m.type === 'warning') this.runtime.onWarning?.(m.message);
    else if (m.type === 'disposed') this.disposed?.();
    else {
      const p = this.pending;
      this.pending = undefined;
      if (m.type === 'result') p?.resolve(m.result);
      else p?.reject(m.user ? new UserError(m.message) : new Error(m.message));
    }
  }

  run(job: QueueJob, control: JobControl, onProgress: (p: JobProgress) => void = () => {}): Promise<JobResult> {
    if (this.pending) return Promise.reject(new Error('ThreadRunner runs one job at a time'));
    const worker = this.thread();
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, onProgress };
      worker.postMessage({ type: 'run', job, flags: control.flags } satisfies ToWorker);
    });
  }

  /** Frees the model and ends the thread. */
  async dispose(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    await new Promise<void>((resolve) => {
      this.disposed = resolve;
      worker.postMessage({ type: 'dispose' } satisfies ToWorker);
    });
    this.worker = undefined;
    worker.removeAllListeners('exit');
    await worker.terminate();
  }
}
