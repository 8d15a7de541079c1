import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { phase, phaseSync, StableDiffusion, writeRandomModel, type PhaseEvent } from '../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-progress-'));
const model = join(root, 'tiny');
// A cache of its own: the graphs are built here, not read from an earlier run.
process.env.TODO_SD_CACHE = join(root, 'cache');

before(() => writeRandomModel(model, 'tiny', { seed: 5 }));

type Event = PhaseEvent | { step: number };

/** Each phase's start comes before its end, with elapsedMs 0 at the start. */
function checkPairs(events: PhaseEvent[]): void {
  const open = new Map<string, number>();
  for (const e of events) {
    if (e.state === 'start') {
      assert.equal(e.elapsedMs, 0);
      open.set(e.phase, (open.get(e.phase) ?? 0) + 1);
    } else {
      assert.ok((open.get(e.phase) ?? 0) > 0, `${e.phase} ended before it started`);
      assert.ok(e.elapsedMs >= 0);
      open.set(e.phase, open.get(e.phase)! - 1);
    }
  }
  assert.ok([...open.values()].every((n) => n === 0), 'every phase ends');
}

const names = (events: Event[]): string[] => events.filter((e): e is PhaseEvent => 'phase' in e && e.state === 'end').map((e) => e.phase);

test('load, graph building and session creation are reported as phases, the lazy ones inside the first step at a size', async () => {
  const atLoad: PhaseEvent[] = [];
  const pipe = await StableDiffusion.load(model, { onProgress: (e) => atLoad.push(e) });
  assert.deepEqual(names(atLoad), ['load:unet', 'load:vae', 'load:tokenizer', 'load:text_encoder']);
  checkPairs(atLoad);

  const run = async (width: number): Promise<Event[]> => {
    const events: Event[] = [];
    await pipe.generate({ prompt: 'a cat', width, height: 32, steps: 2, seed: 1, sampler: 'euler' }, { onProgress: (e) => events.push(e), onStep: (s) => s.phase === 'denoise' && events.push({ step: s.step }) });
    return events;
  };
  const first = await run(32);
  checkPairs(first.filter((e): e is PhaseEvent => 'phase' in e));
  assert.deepEqual(names(first), [
    'graph:text_encoder',
    'session:text_encoder',
    'encode:prompt',
    'graph:unet',
    'session:unet',
    'graph:vae_decoder',
    'session:vae_decoder',
    'decode:vae',
  ]);
  // The U-Net's session is made before the first step reports: that wait is not silent.
  const sessionEnd = first.findIndex((e) => 'phase' in e && e.phase === 'session:unet' && e.state === 'end');
  assert.ok(sessionEnd >= 0 && sessionEnd < first.findIndex((e) => 'step' in e));
  // load's listener hears the lazy phases too.
  assert.deepEqual(names(atLoad).slice(4), names(first));

  // Same size: the sessions are kept, only the work of this call is reported.
  assert.deepEqual(names(await run(32)), ['encode:prompt', 'decode:vae']);
  // A new size: a new U-Net and VAE graph and session (the text encoder's shape is the same).
  assert.deepEqual(names(await run(48)), ['encode:prompt', 'graph:unet', 'session:unet', 'graph:vae_decoder', 'session:vae_decoder', 'decode:vae']);
  await pipe.dispose();
});

test('a phase ends when its work fails, and the error goes on', async () => {
  const events: PhaseEvent[] = [];
  assert.throws(() => phaseSync((e) => events.push(e), 'graph:x', () => {
    throw new Error('broken graph');
  }), /broken graph/);
  await assert.rejects(phase((e) => events.push(e), 'session:x', async () => {
    throw new Error('no session');
  }), /no session/);
  assert.deepEqual(events.map((e) => `${e.phase} ${e.state}`), ['graph:x start', 'graph:x end', 'session:x start', 'session:x end']);
});
