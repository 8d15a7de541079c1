import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomModel } from '../src/index.js';
import type { JobProgress, JobSpec } from '../src/server/jobs.js';
import { ModelRegistry } from '../src/server/models.js';
import { JobControl, toWire } from '../src/server/runner.js';
import { UserError } from '../src/errors.js';
import { ThreadRunner } from '../src/server/runner-thread.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-thread-'));
before(() => writeRandomModel(join(root, 'tiny'), 'tiny', { seed: 2 }));

const job = (seeds: number[], steps: number): JobSpec => ({
  kind: 'txt2img', model: 'tiny', prompt: 'x', negativePrompt: '', width: 32, height: 32, steps, cfg: 7, sampler: 'euler', karras: false, clipSkip: 1, attention: { method: 'dense' }, seeds,
});

test('a job on the worker thread: progress with its phases comes back, this thread stays free, interrupt reaches it', async () => {
  const warnings: string[] = [];
  const runner = new ThreadRunner(new ModelRegistry(root), { onWarning: (m) => warnings.push(m) });
  try {
    const reports: JobProgress[] = [];
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const result = await runner.run(job([1], 3), new JobControl(), (p) => reports.push(p));
    clearInterval(timer);
    assert.equal(result.images.length, 1);
    assert.equal(result.interrupted, false);
    assert.ok(reports.some((p) => p.phase?.name === 'session:unet'));
    assert.deepEqual([...new Set(reports.filter((p) => p.step > 0 && !p.phase).map((p) => p.step))], [1, 2, 3]);
    // Loading the model and making its sessions happened there, not here.
    assert.ok(ticks > reports.length, `${ticks} timer ticks during the job`);

    // The shared flag is read at the next step although the thread is busy.
    const control = new JobControl();
    const interrupted = await runner.run(job([1, 2, 3, 4], 50), control, (p) => p.step === 2 && control.interrupt());
    assert.equal(interrupted.interrupted, true);
    assert.equal(interrupted.images.length, 0);

    // A failing job rejects with the runner's message, a UserError still one (the server's 422); the thread goes on.
    await assert.rejects(runner.run({ ...job([1], 2), model: 'nope' }, new JobControl()), (e) => e instanceof UserError && /unknown model "nope"/.test(e.message));
    // An Extras job runs there too.
    const extras = await runner.run({ kind: 'extras', images: [toWire({ width: 8, height: 8, data: new Uint8Array(192).fill(90) })], mode: 'by', by: 2, width: 0, height: 0, crop: false, upscaler: 'Lanczos', upscaler2: 'None', upscaler2Visibility: 0 }, new JobControl());
    assert.equal(extras.images.length, 1);
    assert.equal((await runner.run(job([5], 2), new JobControl())).images.length, 1);
  } finally {
    await runner.dispose();
  }
});
