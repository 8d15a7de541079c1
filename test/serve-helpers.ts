/** Helpers for the serve tests: the todo-sd command as a child process, free ports. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { repoRoot } from './helpers.js';

export interface Child {
  proc: ChildProcess;
  /** Everything it wrote so far. */
  log: () => string;
  /** Resolves with the first match of `re` in its output (rejects if it exits first or after `ms`). */
  waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

/** Starts `todo-sd ARGS` from source. */
export function startCli(args: string[], cwd = repoRoot): Child {
  const proc = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(repoRoot, 'src/cli/main.ts'), ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  return watch(proc);
}

/** Follows a child's output (stderr unless another stream is given). */
export function watch(proc: ChildProcess, stream = proc.stderr!): Child {
  let text = '';
  const listeners = new Set<() => void>();
  stream.on('data', (d: Buffer) => {
    text += d.toString();
    for (const l of listeners) l();
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const waitFor = (re: RegExp, ms = 60_000): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = text.match(re);
        if (!m) return;
        done();
        resolve(m);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${re} after ${ms} ms; output so far:\n${text}`));
      }, ms);
      const onExit = (): void => {
        done();
        reject(new Error(`exited before ${re}; output:\n${text}`));
      };
      const done = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
        proc.off('exit', onExit);
      };
      listeners.add(check);
      proc.on('exit', onExit);
      check();
    });
  return { proc, log: () => text, waitFor, exited };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
