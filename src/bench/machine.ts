/** What a benchmark ran on, recorded with every result; and the process's memory as Linux reports it. */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, platform, arch } from 'node:os';
import { createRequire } from 'node:module';
import { mallocSettings } from '../runtime/malloc.js';

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  /** CPU features that decide onnxruntime's kernels. */
  flags: string[];
  os: string;
  node: string;
  onnxruntime: string;
  /** NVIDIA GPUs as nvidia-smi names them, when there are any. */
  gpu?: string;
  /** glibc's malloc thresholds from the environment (the CLI sets them: cli/relaunch.ts), e.g. `MALLOC_MMAP_THRESHOLD_=65536`. */
  malloc?: string;
}

/** The GPUs' names (nvidia-smi), or undefined where there is none. */
function gpuNames(): string | undefined {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    return out.trim().split('\n').join(', ') || undefined;
  } catch {
    return undefined;
  }
}

export function machineInfo(): MachineInfo {
  let flags: string[] = [];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = (line?.split(':')[1]?.trim().split(/\s+/) ?? []).filter((f) => /^(avx|avx2|fma|avx512f|avx512_vnni|avx512_bf16|amx_.*)$/.test(f));
  } catch {
    // Not Linux: no flags.
  }
  const ortPackage = createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string };
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    flags,
    os: `${platform()} ${arch()}`,
    node: process.version,
    onnxruntime: ortPackage.version,
    gpu: gpuNames(),
    malloc: mallocSettings(),
  };
}

function status(field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = readFileSync('/proc/self/status', 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Resident memory now, MiB. */
export const rssMiB = (): number => status('VmRSS');

/** Peak resident memory since the last resetPeak(), MiB. */
export const peakRssMiB = (): number => status('VmHWM');

/** Restarts the peak (Linux: writing 5 to clear_refs resets VmHWM). */
export function resetPeak(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // Elsewhere the peak covers the whole process.
  }
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
