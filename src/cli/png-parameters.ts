/** Reading the `parameters` text of a PNG for `info` and `generate --from-png`, with clear errors. */
import { readFileSync } from 'node:fs';
import { readPngText } from '../io/png.js';
import { UserError } from '../errors.js';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function readPngParameters(file: string): string {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (bytes.length < 8 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) throw new UserError(`${file} is not a PNG file (give a PNG written by todo-sd or AUTOMATIC1111)`);
  let text: Record<string, string>;
  try {
    text = readPngText(bytes);
  } catch (e) {
    throw new UserError(`${file} is a damaged PNG: ${(e as Error).message}`);
  }
  const parameters = text.parameters;
  if (parameters === undefined) {
    throw new UserError(`${file} has no "parameters" text: it was not written by todo-sd, AUTOMATIC1111 or a tool that keeps their generation settings`);
  }
  return parameters;
}
