/** Shared by the whole-pipeline conformance tests: reference cases as CLI flags, and 8-bit image comparison. */
import { readFileSync } from 'node:fs';
import { decode } from 'fast-png';

export interface CaseArgs {
  prompt: string;
  'negative-prompt': string;
  width: number;
  height: number;
  steps: number;
  sampler: string;
  karras: boolean;
  cfg: number;
  seed: number;
}

export interface ReferenceCase {
  name: string;
  png: string;
  args: CaseArgs;
}

export function readCases<T extends ReferenceCase>(file: string): T[] {
  return (JSON.parse(readFileSync(file, 'utf8')) as { cases: T[] }).cases;
}

/** The case's `todo-sd generate` flags. */
export function caseFlags(a: CaseArgs): string[] {
  return [
    '--prompt', a.prompt,
    '--negative-prompt', a['negative-prompt'],
    '--width', String(a.width),
    '--height', String(a.height),
    '--steps', String(a.steps),
    '--sampler', a.sampler,
    ...(a.karras ? ['--karras'] : []),
    '--cfg', String(a.cfg),
    '--seed', String(a.seed),
  ];
}

/** Max |difference| of 8-bit values and PSNR in dB (check_e2e_png.py's measures); sizes must match. */
export function comparePngs(actualFile: string, referenceFile: string): { maxDiff: number; psnr: number } {
  const a = decode(readFileSync(actualFile));
  const b = decode(readFileSync(referenceFile));
  if (a.width !== b.width || a.height !== b.height) throw new Error(`size ${a.width}x${a.height} vs reference ${b.width}x${b.height}`);
  if (a.channels !== 3 || b.channels !== 3) throw new Error(`expected RGB PNGs; got ${a.channels} and ${b.channels} channels`);
  let maxDiff = 0;
  let se = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    maxDiff = Math.max(maxDiff, d);
    se += d * d;
  }
  const mse = se / a.data.length;
  return { maxDiff, psnr: mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse) };
}
