import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startCli, watch, type Child } from './serve-helpers.js';

// A real redis-server (Debian's package; scripts/test-deps.sh installs it), a server and workers
// as separate processes, as they run on separate machines.
const root = mkdtempSync(join(tmpdir(), 'todo-sd-redis-'));
let redis: Child;
let redisUrl: string;
let server: Child;
let api: string;
const workers: Child[] = [];

function startWorker(): Child {
  // Long enough that a worker busy loading a model on a loaded machine keeps its lock.
  const w = startCli(['worker', '--redis', redisUrl, '--lock-duration', '8000'], root);
  workers.push(w);
  return w;
}

async function txt2img(body: object): Promise<{ status: number; images: string[]; info: { all_seeds: number[]; interrupted: boolean } }> {
  const r = await fetch(`${api}/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = (await r.json()) as { images: string[]; info: string };
  return { status: r.status, images: j.images, info: r.ok ? JSON.parse(j.info) : j };
}

async function progress(): Promise<{ state: { sampling_step: number }; current_image: string | null }> {
  return (await (await fetch(`${api}/progress`)).json()) as { state: { sampling_step: number }; current_image: string | null };
}

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Job ids each worker reported finished. */
const finished = (w: Child): string[] => [...w.log().matchAll(/job (\S+) finished/g)].map((m) => m[1]!);
const started = (w: Child): string[] => [...w.log().matchAll(/job (\S+) started/g)].map((m) => m[1]!);

before(async () => {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
  redis = watch(proc, proc.stdout!);
  await redis.waitFor(/Ready to accept connections/);
  redisUrl = `redis://127.0.0.1:${port}`;
  server = startCli(['serve', '--port', '0', '--redis', redisUrl], root);
  api = `${(await server.waitFor(/serving on (http:\/\/\S+)/))[1]}/sdapi/v1`;
  await Promise.all([startWorker(), startWorker()].map((w) => w.waitFor(/taking jobs/)));
});

after(async () => {
  for (const c of [...workers, server]) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  redis.proc.kill('SIGTERM');
  await Promise.all([...workers, server, redis].map((c) => c.exited));
});

test('a worker killed mid-job: another worker takes the job over and it finishes once', async () => {
  const pending = txt2img({ prompt: 'a lighthouse', steps: 40, width: 32, height: 32, seed: 3 });
  await until('a worker to start the job', () => workers.some((w) => started(w).length > 0));
  const victim = workers.find((w) => started(w).length > 0)!;
  const jobId = started(victim)[0]!;
  // Progress flows back from the worker to the server's /progress.
  await until('progress from the worker', async () => (await progress()).state.sampling_step > 0);
  victim.proc.kill('SIGKILL');
  const r = await pending;
  assert.equal(r.status, 200, JSON.stringify(r));
  assert.equal(r.images.length, 1);
  assert.deepEqual(r.info.all_seeds, [3]);
  const survivor = workers.find((w) => w !== victim)!;
  // Its log line may reach us just after the answer.
  await until('the survivor to log the job', () => finished(survivor).length > 0, 10_000);
  assert.deepEqual(started(survivor), [jobId]);
  assert.deepEqual(finished(survivor), [jobId]);
  assert.deepEqual(finished(victim), []);
  await startWorker().waitFor(/taking jobs/);
});

test('interrupt reaches the worker that runs the job', async () => {
  const pending = txt2img({ prompt: 'stop me', steps: 40, width: 32, height: 32, n_iter: 3, seed: 5 });
  await until('progress', async () => (await progress()).state.sampling_step > 0);
  assert.equal((await fetch(`${api}/interrupt`, { method: 'POST' })).status, 200);
  const r = await pending;
  assert.equal(r.status, 200);
  assert.equal(r.info.interrupted, true);
  assert.ok(r.images.length < 3);
  // The worker's flag came back through BullMQ's progress events and stays up until the next job.
  const p = (await (await fetch(`${api}/progress`)).json()) as { state: { interrupted: boolean; job_count: number } };
  assert.deepEqual([p.state.interrupted, p.state.job_count], [true, 0]);
});

test("a user error in a worker's job comes back as the server's 422 in A1111's error shape, not a 500", async () => {
  const r = await txt2img({ prompt: 'x', steps: 2, width: 8, height: 8, override_settings: { token_downsampling_factor: 8 } });
  assert.equal(r.status, 422, JSON.stringify(r));
  const body = r.info as unknown as { error: string; detail: string; errors: string };
  assert.equal(body.error, 'UserError');
  assert.match(body.detail, /ToDo: factor 8 is larger than the \dx\d token grid/);
  assert.equal(body.errors, body.detail);
});

const alive = (w: Child): boolean => w.proc.exitCode === null && w.proc.signalCode === null;

test('20 concurrent requests are all answered, each job finished exactly once', async () => {
  const live = workers.filter(alive);
  // Earlier jobs' log lines first, so that only this test's jobs are counted below.
  await until('earlier jobs to be logged', () => live.every((w) => started(w).length === finished(w).length), 10_000);
  const before = live.flatMap(finished);
  const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => txt2img({ prompt: `job ${i}`, steps: 2, width: 32, height: 32, seed: 100 + i })));
  assert.deepEqual(rs.map((r) => r.status), Array(20).fill(200));
  assert.deepEqual(rs.map((r) => r.info.all_seeds[0]), Array.from({ length: 20 }, (_, i) => 100 + i));
  // A worker logs a job once BullMQ has recorded it, which may reach us just after the answer.
  const ids = (): string[] => live.flatMap(finished).filter((id) => !before.includes(id));
  await until('the workers to log 20 finished jobs', () => ids().length >= 20, 10_000);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(ids().length, 20);
  assert.equal(new Set(ids()).size, 20);
  // Both live workers took part.
  assert.ok(live.every((w) => finished(w).some((id) => ids().includes(id))));
});

test('SIGTERM: a worker finishes its current job, then exits', async () => {
  const live = workers.filter(alive);
  const startedBefore = live.map((w) => started(w).length);
  const pending = txt2img({ prompt: 'finish me', steps: 30, width: 32, height: 32, seed: 8 });
  await until('a worker to start the job', () => live.some((w, i) => started(w).length > startedBefore[i]!));
  const w = live.find((x, i) => started(x).length > startedBefore[i]!)!;
  const jobId = started(w).at(-1)!;
  w.proc.kill('SIGTERM');
  const r = await pending;
  assert.equal(r.status, 200);
  assert.equal(r.images.length, 1);
  assert.equal(await w.exited, 0);
  assert.ok(finished(w).includes(jobId), w.log());
});
