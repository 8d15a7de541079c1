/** Atomic file output: a failed or interrupted write never leaves a half-written file. */
import { renameSync, rmSync, writeFileSync } from 'node:fs';

/** Writes bytes to `path` through a temporary name, so a failed write leaves nothing behind. */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
