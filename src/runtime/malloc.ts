/**
 * glibc's malloc thresholds for processes that hold models: glibc keeps the memory onnxruntime
 * frees (a closed session's weights, a VAE run's buffers) in its heap for reuse, where most of it
 * cannot go back to the system, so a process that closes the text encoders and opens an SDXL
 * U-Net, or switches between two U-Net graphs, holds the freed gigabytes beside the new ones.
 * Fixed mmap and trim thresholds give every block of 64 KiB or more a mapping of its own that
 * free() returns at once. glibc reads them from the environment when a process starts.
 */
export const MALLOC_SETTINGS: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '65536' };

/** The thresholds this environment sets, as `NAME=value` words; undefined where it sets none. */
export function mallocSettings(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const set = Object.keys(MALLOC_SETTINGS).filter((k) => env[k] !== undefined).map((k) => `${k}=${env[k]}`);
  return set.length ? set.join(' ') : undefined;
}
