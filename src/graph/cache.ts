/**
 * On-disk cache of serialized graphs, keyed by everything that shapes them: component config,
 * weight files (path, size, mtime), input shapes, attention options and this package's version.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../io/atomic.js';

export function cacheDir(): string {
  return process.env.TODO_SD_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'todo-sd');
}

let codeHash: string | undefined;

/** A hash of this package's own code, so that a changed graph builder never reads a stale graph. */
function codeFingerprint(): string {
  if (codeHash) return codeHash;
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(js|ts)$/.test(e.name) && !e.name.endsWith('.d.ts')) h.update(e.name).update(readFileSync(p));
    }
  };
  walk(dirname(dirname(fileURLToPath(import.meta.url))));
  codeHash = h.digest('hex');
  return codeHash;
}

export function cacheKey(parts: unknown): string {
  return createHash('sha256').update(codeFingerprint()).update(JSON.stringify(parts)).digest('hex').slice(0, 32);
}

/** Returns the cached bytes for `key`, or builds, stores (atomically) and returns them. */
export function cachedGraph(key: string, build: () => Uint8Array): Uint8Array {
  const dir = join(cacheDir(), 'graphs');
  const file = join(dir, `${key}.onnx`);
  try {
    return readFileSync(file);
  } catch {
    // Not cached yet.
  }
  const bytes = build();
  try {
    mkdirSync(dir, { recursive: true });
    writeFileAtomic(file, bytes);
  } catch {
    // A read-only cache only costs a rebuild next time.
  }
  return bytes;
}
