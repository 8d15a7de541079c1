/** `--lora FILE[:WEIGHT]`, repeatable. */
import { InvalidArgumentError } from 'commander';
import type { LoraSpec } from '../lora/merge.js';

/** Splits at the last ':' when a number follows it, so that paths with ':' still work. */
export function parseLoraOption(v: string, previous: LoraSpec[] = []): LoraSpec[] {
  const m = /^(.+):([^:/\\]*)$/.exec(v);
  let spec: LoraSpec = { path: v, scale: 1 };
  if (m) {
    const scale = Number(m[2]);
    if (m[2]!.trim() === '' || !Number.isFinite(scale)) {
      throw new InvalidArgumentError(`--lora ${v}: "${m[2]}" after the last ':' is not a weight; write FILE.safetensors or FILE.safetensors:0.8`);
    }
    spec = { path: m[1]!, scale };
  }
  return [...previous, spec];
}
