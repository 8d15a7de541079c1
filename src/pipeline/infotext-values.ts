/** Values in A1111's infotext: Python's float repr, and numbers read back with an error that names the field. */
import { UserError } from '../errors.js';

/** Python's repr of a float: 2 → "2.0", 1.5 → "1.5". */
export function pyFloat(v: number): string {
  return Number.isInteger(v) ? v.toFixed(1) : String(v);
}

/** The number under `key`, undefined when absent; throws when it is not a number. */
export function infotextNumber(fields: Readonly<Record<string, string>>, key: string): number | undefined {
  const raw = fields[key];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) throw new UserError(`infotext: "${key}: ${raw}" is not a number`);
  return v;
}
