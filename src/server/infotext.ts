/**
 * Reading A1111's infotext back into the shape its `png-info` endpoint returns: "Prompt",
 * "Negative prompt", then each "key: value" setting, with "Size" also split into "Size-1" /
 * "Size-2" as A1111 does.
 */
import { parseParameters } from '../pipeline/parameters.js';

export function infotextFields(text: string): Record<string, string> {
  const p = parseParameters(text);
  const out: Record<string, string> = { Prompt: p.prompt, 'Negative prompt': p.negativePrompt, ...p.settings };
  const size = /^(\d+)x(\d+)$/.exec(out.Size ?? '');
  if (size) [out['Size-1'], out['Size-2']] = [size[1]!, size[2]!];
  return out;
}
