/**
 * Jobs on Redis through BullMQ: the server adds a job and waits for its result, workers on any
 * machine take jobs one at a time. Progress comes back as BullMQ progress events. A worker that
 * dies mid-job stops renewing its lock; BullMQ's stalled-job check hands the job to another
 * worker, so it finishes once. Interrupt and skip travel as custom queue events that every
 * worker hears and the one running the job acts on. A job that fails on the user's input comes
 * back as a result naming the error, so the server answers it as the UserError it was.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { Queue, QueueEvents, QueueEventsProducer, Worker, type Job, type QueueBase, type QueueEventsListener } from 'bullmq';
import type { JobProgress, JobQueue, JobResult, QueueJob, StopFlags } from './jobs.js';
import { JobControl, type Runner } from './runner.js';
import { UserError } from '../errors.js';

const QUEUE = 'todo-sd';
const CONTROL_EVENT = 'todo-sd-control';

interface ControlMessage {
  eventName: typeof CONTROL_EVENT;
  action: 'interrupt' | 'skip';
  jobId: string;
}

interface ControlListener extends QueueEventsListener {
  [CONTROL_EVENT]: (message: ControlMessage, id: string) => void;
}

/** Fails at once, naming the URL, when Redis does not answer (BullMQ itself would retry forever). */
async function probe(url: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 5_000 });
  let cause: string | undefined;
  client.on('error', (e: Error) => (cause ??= e.message));
  try {
    await client.connect();
    await client.ping();
  } catch (e) {
    throw new Error(`cannot reach Redis at ${url} (${cause ?? (e as Error).message}); start redis-server there or fix --redis`);
  } finally {
    client.disconnect();
  }
}

/** Connection errors after start-up (Redis restarting, network) are reported; BullMQ reconnects. */
function reportErrors(parts: QueueBase[], log: (message: string) => void): void {
  for (const p of parts) p.on('error', (e: Error) => log(`redis: ${e.message}`));
}

/** A job's result on Redis: BullMQ keeps only the message of a failure, not its class. */
type RedisResult = JobResult & { userError?: string };

const connection = (url: string): { url: string; maxRetriesPerRequest: null } => ({ url, maxRetriesPerRequest: null });

export class RedisQueue implements JobQueue {
  /** This server's jobs that a worker has started, by BullMQ job id. */
  private readonly active = new Map<string, { startedAt: number; progress?: JobProgress }>();
  private lastFlags: StopFlags = { interrupted: false, skipped: false };

  private constructor(
    private readonly queue: Queue<QueueJob, RedisResult>,
    private readonly events: QueueEvents,
    private readonly control: QueueEventsProducer,
    private readonly mine: Set<string>,
  ) {
    events.on('active', ({ jobId }) => {
      if (mine.has(jobId)) this.active.set(jobId, { startedAt: Date.now() });
    });
    events.on('progress', ({ jobId, data }) => {
      const a = this.active.get(jobId);
      if (a) a.progress = data as JobProgress;
    });
  }

  static async connect(url: string, log: (message: string) => void = () => {}): Promise<RedisQueue> {
    await probe(url);
    const queue = new Queue<QueueJob, RedisResult>(QUEUE, { connection: connection(url) });
    const events = new QueueEvents(QUEUE, { connection: connection(url) });
    const control = new QueueEventsProducer(QUEUE, { connection: connection(url) });
    reportErrors([queue, events, control], log);
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady(), control.waitUntilReady()]);
    return new RedisQueue(queue, events, control, new Set());
  }

  async run(spec: QueueJob): Promise<JobResult> {
    const id = randomUUID();
    // Known as ours before it is added: a worker may take it at once.
    this.mine.add(id);
    try {
      const job = await this.queue.add('generate', spec, { jobId: id, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } });
      const { userError, ...result } = (await job.waitUntilFinished(this.events)) as RedisResult;
      if (userError !== undefined) throw new UserError(userError);
      // The result is the word on interrupt; a progress event may trail it.
      this.lastFlags = { interrupted: result.interrupted, skipped: this.active.get(id)?.progress?.skipped ?? false };
      return result;
    } finally {
      this.mine.delete(id);
      this.active.delete(id);
    }
  }

  async status(): ReturnType<JobQueue['status']> {
    const running = [...this.active].map(([id, a]) => ({ id, ...a })).sort((a, b) => a.startedAt - b.startedAt);
    const p = running[0]?.progress;
    const flags = running.length > 0 ? { interrupted: p?.interrupted ?? false, skipped: p?.skipped ?? false } : this.lastFlags;
    return { running, waiting: await this.queue.getWaitingCount(), flags };
  }

  private async send(action: ControlMessage['action']): Promise<void> {
    await Promise.all([...this.active.keys()].map((jobId) => this.control.publishEvent<ControlMessage>({ eventName: CONTROL_EVENT, action, jobId })));
  }

  interrupt(): Promise<void> {
    return this.send('interrupt');
  }

  skip(): Promise<void> {
    return this.send('skip');
  }

  async close(): Promise<void> {
    await Promise.all([this.events.close(), this.control.close(), this.queue.close()]);
  }
}

export interface WorkerTiming {
  /**
   * How long a job's lock lasts without renewal; workers also look for stalled jobs this often,
   * so a dead worker's job is taken over within about twice this.
   */
  lockDurationMs?: number;
}

export class RedisWorker {
  readonly id = randomUUID().slice(0, 8);

  private constructor(
    private readonly worker: Worker<QueueJob, RedisResult>,
    private readonly events: QueueEvents,
    private readonly runner: Runner,
  ) {}

  static async start(url: string, runner: Runner, timing: WorkerTiming = {}, log: (message: string) => void = () => {}): Promise<RedisWorker> {
    await probe(url);
    /** Controls of the job this worker runs, by job id. */
    const running = new Map<string, JobControl>();
    const events = new QueueEvents(QUEUE, { connection: connection(url) });
    events.on<ControlListener>(CONTROL_EVENT, (m: ControlMessage) => {
      const control = running.get(m.jobId);
      if (m.action === 'interrupt') control?.interrupt();
      else control?.skip();
    });
    const process = async (job: Job<QueueJob, RedisResult>): Promise<RedisResult> => {
      const control = new JobControl();
      running.set(job.id!, control);
      log(`job ${job.id} started`);
      try {
        return await runner.run(job.data, control, (p) => void job.updateProgress(p).catch(() => undefined));
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        return { images: [], interrupted: false, timing: [], userError: e.message };
      } finally {
        running.delete(job.id!);
      }
    };
    const worker = new Worker<QueueJob, RedisResult>(QUEUE, process, {
      connection: connection(url),
      concurrency: 1,
      lockDuration: timing.lockDurationMs ?? 30_000,
      stalledInterval: timing.lockDurationMs ?? 30_000,
      maxStalledCount: 1,
      autorun: false,
    });
    // Logged once BullMQ has recorded the outcome: a job whose lock was lost is not reported as finished here.
    worker.on('completed', (job, r) => log(`job ${job.id} finished: ${r.userError === undefined ? `${r.images.length} images${r.interrupted ? ' (interrupted)' : ''}` : `refused (${r.userError})`}`));
    worker.on('failed', (job, e) => log(`job ${job?.id ?? '?'} failed: ${e.message}`));
    reportErrors([events, worker], log);
    await Promise.all([events.waitUntilReady(), worker.waitUntilReady()]);
    void worker.run();
    return new RedisWorker(worker, events, runner);
  }

  /** Stops taking jobs and finishes the one it is running. */
  async close(): Promise<void> {
    await this.worker.close();
    await this.events.close();
    await this.runner.dispose();
  }
}
