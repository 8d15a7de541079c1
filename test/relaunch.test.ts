import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { relaunchEnv } from '../src/cli/relaunch.js';
import { MALLOC_SETTINGS, mallocSettings } from '../src/runtime/malloc.js';
import { startCli } from './serve-helpers.js';

test("the CLI starts again with glibc's malloc thresholds on Linux, unless the user set either or it runs under the inspector", () => {
  const env = relaunchEnv({ PATH: '/bin', HOME: '/h' }, 'linux', ['--import', 'tsx']);
  assert.deepEqual(env, { PATH: '/bin', HOME: '/h', MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '65536' });
  assert.equal(mallocSettings(env), 'MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=65536');
  assert.equal(relaunchEnv({ MALLOC_TRIM_THRESHOLD_: '0' }, 'linux', []), undefined);
  assert.equal(relaunchEnv({ MALLOC_MMAP_THRESHOLD_: '131072' }, 'linux', []), undefined);
  for (const os of ['darwin', 'win32'] as const) assert.equal(relaunchEnv({}, os, []), undefined);
  assert.equal(relaunchEnv({}, 'linux', ['--inspect-brk=9230']), undefined, 'the inspector stays with the process it was given to');
  assert.deepEqual(Object.keys(MALLOC_SETTINGS).sort(), ['MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_']);
});

/** Whether something still answers on the port. */
const answers = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

async function stopsAnswering(port: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (!(await answers(port))) return true;
  return false;
}

test('a relaunched server: SIGTERM reaches the server (graceful stop, exit 0); SIGKILL of the first process takes the server with it', async () => {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const server = startCli(['serve', '--port', '0']);
    const url = new URL((await server.waitFor(/serving on (http:\/\/\S+)/))[1]!);
    const port = Number(url.port);
    assert.ok(await answers(port));
    server.proc.kill(signal);
    if (signal === 'SIGTERM') {
      assert.equal(await server.exited, 0);
      assert.match(server.log(), /SIGTERM: finishing the current job, then stopping/);
    } else {
      assert.equal(await server.exited, null);
    }
    assert.ok(await stopsAnswering(port, 5000), `after ${signal} of the first process, port ${port} still answers`);
  }
});
