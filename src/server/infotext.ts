/**
 * Reading A1111's infotext back into the shape its `png-info` endpoint returns: "Prompt",
 * "Negative prompt", then each "key: value" setting (quoted values unquoted), with "Size" also
 * split into "Size-1" / "Size-2" as A1111 does.
 */

/** key: value pairs separated by commas, where a value may be a JSON-quoted string. */
const SETTING = /\s*([\w ()+-.]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)/g;

export function infotextFields(text: string): Record<string, string> {
  const lines = text.trim().split('\n');
  const last = lines.at(-1) ?? '';
  const hasSettings = lines.length > 1 || /(^|, )Steps: /.test(last);
  const settingsLine = hasSettings && /(^|, )Steps: /.test(last) ? lines.pop()! : '';
  const prompt: string[] = [];
  const negative: string[] = [];
  for (const line of lines) {
    if (line.startsWith('Negative prompt:') || negative.length) negative.push(negative.length ? line : line.slice('Negative prompt:'.length).trimStart());
    else prompt.push(line);
  }
  const out: Record<string, string> = { Prompt: prompt.join('\n'), 'Negative prompt': negative.join('\n') };
  for (const m of settingsLine.matchAll(SETTING)) {
    const raw = m[2]!.trim();
    out[m[1]!.trim()] = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
  }
  const size = /^(\d+)x(\d+)$/.exec(out.Size ?? '');
  if (size) [out['Size-1'], out['Size-2']] = [size[1]!, size[2]!];
  return out;
}
