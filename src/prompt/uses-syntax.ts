/** Whether a prompt means something different in AUTOMATIC1111's syntax than as plain text. */
import { parsePromptAttention } from './attention.js';
import { promptSchedule } from './schedule.js';

export function usesPromptSyntax(text: string): boolean {
  const parsed = parsePromptAttention(text);
  const plain = parsed.length === 1 && parsed[0]![0] === text && parsed[0]![1] === 1;
  return !plain || promptSchedule(text, 2).length > 1;
}
