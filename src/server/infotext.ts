/**
 * Reading A1111's infotext back into the shape its `png-info` endpoint returns: "Prompt",
 * "Negative prompt", then each "key: value" setting (quoted values unquoted), with "Size" also
 * split into "Size-1" / "Size-2" as A1111 does.
 */

/** A1111's re_param: `key: value` pairs, a value either JSON-quoted or running to the next comma. */
const PARAM = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/gu;

function unquote(v: string): string {
  if (!(v.length >= 2 && v.startsWith('"') && v.endsWith('"'))) return v;
  try {
    const parsed: unknown = JSON.parse(v);
    return typeof parsed === 'string' ? parsed : v;
  } catch {
    return v;
  }
}

/**
 * As A1111's parse_generation_parameters: the last line holds the settings when it has at least
 * 3 `key: value` pairs; lines up to `Negative prompt:` are the prompt, the rest the negative prompt.
 */
export function parseInfotext(text: string): { prompt: string; negativePrompt: string; settings: Record<string, string> } {
  const lines = text.trim().split('\n');
  let last = lines.pop() ?? '';
  if ([...last.matchAll(PARAM)].length < 3) {
    lines.push(last);
    last = '';
  }
  const prompt: string[] = [];
  const negative: string[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line.startsWith('Negative prompt:') || negative.length) negative.push(negative.length ? line : line.slice('Negative prompt:'.length).trim());
    else prompt.push(line);
  }
  const settings: Record<string, string> = {};
  for (const m of last.matchAll(PARAM)) settings[m[1]!.trim()] = unquote(m[2]!.trim());
  return { prompt: prompt.join('\n'), negativePrompt: negative.join('\n'), settings };
}

export function infotextFields(text: string): Record<string, string> {
  const p = parseInfotext(text);
  const out: Record<string, string> = { Prompt: p.prompt, 'Negative prompt': p.negativePrompt, ...p.settings };
  const size = /^(\d+)x(\d+)$/.exec(out.Size ?? '');
  if (size) [out['Size-1'], out['Size-2']] = [size[1]!, size[2]!];
  return out;
}
