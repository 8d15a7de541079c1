/**
 * The embedded queue: one worker in this process, first come first served, so concurrent
 * requests wait their turn instead of running side by side and running out of memory.
 */
import type { JobProgress, JobQueue, JobResult, QueueJob, StopFlags } from './jobs.js';
import { JobControl, type Runner } from './runner.js';

interface Running {
  id: string;
  startedAt: number;
  progress?: JobProgress;
  control: JobControl;
}

export class LocalQueue implements JobQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private nextId = 1;
  private current?: Running;
  private lastFlags: StopFlags = { interrupted: false, skipped: false };

  constructor(private readonly runner: Runner) {}

  run(job: QueueJob): Promise<JobResult> {
    const id = String(this.nextId++);
    this.waiting++;
    const result = this.tail.then(async () => {
      this.waiting--;
      const running: Running = { id, startedAt: Date.now(), control: new JobControl() };
      this.current = running;
      try {
        return await this.runner.run(job, running.control, (p) => (running.progress = p));
      } finally {
        this.lastFlags = { interrupted: running.control.interrupted, skipped: running.control.skipped };
        this.current = undefined;
      }
    });
    // The next job starts after this one, whether it succeeded or failed.
    this.tail = result.catch(() => undefined);
    return result;
  }

  async status(): ReturnType<JobQueue['status']> {
    const c = this.current;
    const flags = c ? { interrupted: c.control.interrupted, skipped: c.control.skipped } : this.lastFlags;
    return { running: c ? [{ id: c.id, startedAt: c.startedAt, progress: c.progress }] : [], waiting: this.waiting, flags };
  }

  async interrupt(): Promise<void> {
    this.current?.control.interrupt();
  }

  async skip(): Promise<void> {
    this.current?.control.skip();
  }

  /** Lets the queued jobs finish, then frees the model. */
  async close(): Promise<void> {
    await this.tail;
    await this.runner.dispose();
  }
}
