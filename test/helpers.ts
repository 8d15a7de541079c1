/** Shared test helpers: fixture locations, tensor comparison. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../src/io/safetensors.js';
import type { Tensor } from '../src/tensor.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const sharedDir = process.env.TODO_SD_SHARED ?? join(repoRoot, '..', 'shared');

/** A fixture path; a missing fixture is an error (CI has ../shared), never a skip. */
export function fixture(...parts: string[]): string {
  const p = join(sharedDir, 'fixtures', ...parts);
  if (!existsSync(p)) throw new Error(`fixture ${p} is missing: conformance tests need ../shared/fixtures (or TODO_SD_SHARED)`);
  return p;
}

export function readTensor(file: string, name: string): Tensor {
  const f = SafetensorsFile.open(file);
  return { data: f.readFloat32(name), dims: f.info(name).shape };
}

/** ‖a − b‖ / ‖b‖ */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/** Runs the todo-sd command line from source in `cwd`. */
export function runCli(cwd: string, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), join(repoRoot, 'src/cli/main.ts'), ...args], { encoding: 'utf8', cwd });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
