/**
 * The command line starts itself again, once, with glibc's malloc thresholds for models
 * (runtime/malloc.ts), which glibc reads only at a process's start. Thresholds the user set
 * (either variable) are left as they are, and so is any system but Linux, and a process under
 * the inspector (whose port the child could not have).
 */
import { spawn } from 'node:child_process';
import { MALLOC_SETTINGS, mallocSettings } from '../runtime/malloc.js';

/** The environment to start again with, or undefined where the process should run as it is. */
export function relaunchEnv(env: NodeJS.ProcessEnv, os: NodeJS.Platform, execArgv: readonly string[]): NodeJS.ProcessEnv | undefined {
  if (os !== 'linux' || mallocSettings(env) !== undefined || execArgv.some((a) => a.startsWith('--inspect'))) return undefined;
  return { ...env, ...MALLOC_SETTINGS };
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Starts this command again with MALLOC_SETTINGS when it needs them and returns true: this
 * process then only passes signals on and leaves with the child's exit status. A parent that
 * dies without passing a signal on was killed outright (SIGKILL, the OOM killer): the child, left
 * behind, does the same at once, so no server or worker runs on (or finishes a job) orphaned.
 */
export function relaunch(): boolean {
  const parent = process.env.TODO_SD_PARENT_PID;
  if (parent !== undefined) {
    watchParent(Number(parent));
    return false;
  }
  const env = relaunchEnv(process.env, process.platform, process.execArgv);
  if (!env) return false;
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...env, TODO_SD_PARENT_PID: String(process.pid) } });
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  for (const s of FORWARDED) process.on(s, forward);
  child.on('error', (e) => {
    process.stderr.write(`todo-sd: error: could not start again with the malloc settings (${e.message}); set MALLOC_MMAP_THRESHOLD_=65536 yourself to skip this step\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    for (const s of FORWARDED) process.off(s, forward);
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
  return true;
}

function watchParent(pid: number): void {
  delete process.env.TODO_SD_PARENT_PID;
  setInterval(() => {
    if (process.ppid !== pid) process.kill(process.pid, 'SIGKILL');
  }, 200).unref();
}
