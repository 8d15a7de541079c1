/** The worker thread of runner-thread.ts: a JobRunner that takes jobs by message. */
import { parentPort, workerData } from 'node:worker_threads';
import { UserError } from '../errors.js';
import { ModelRegistry } from './models.js';
import { JobControl, JobRunner } from './runner.js';
import type { FromWorker, ToWorker, WorkerSetup } from './runner-thread.js';

const port = parentPort!;
const setup = (workerData as { setup: WorkerSetup }).setup;
const send = (m: FromWorker): void => port.postMessage(m);
const runner = new JobRunner(new ModelRegistry(setup.modelsDir), { ...setup.runtime, onWarning: (message) => send({ type: 'warning', message }) }, setup.options);

port.on('message', (m: ToWorker) => {
  if (m.type === 'dispose') {
    void runner.dispose().finally(() => send({ type: 'disposed' }));
    return;
  }
  runner.run(m.job, new JobControl(m.flags), (progress) => send({ type: 'progress', progress })).then(
    (result) => send({ type: 'result', result }),
    (e: Error) => send({ type: 'error', message: e.message, user: e instanceof UserError }),
  );
});
