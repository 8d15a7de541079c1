import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Progress } from '../src/cli/progress.js';

/** A stream that says it is a terminal and keeps what is written. */
function terminal(): { stream: NodeJS.WriteStream; text: () => string } {
  let text = '';
  const stream = { isTTY: true, write: (s: string) => ((text += s), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => text };
}

test('a phase shows at once with its label, and leaves a line with its time when it took a while', async () => {
  const t = terminal();
  const p = new Progress(t.stream);
  p.phase({ phase: 'session:unet', state: 'start', elapsedMs: 0 });
  // No time at first: onnxruntime may hold the thread, and a time that stands still would mislead.
  assert.match(t.text(), /create session: unet …$/);
  p.phase({ phase: 'graph:vae_decoder', state: 'start', elapsedMs: 0 });
  p.phase({ phase: 'graph:vae_decoder', state: 'end', elapsedMs: 12 });
  // Short phases leave nothing behind; the outer one is shown again.
  assert.doesNotMatch(t.text(), /✔ build graph: vae_decoder/);
  assert.match(t.text(), /create session: unet …$/);
  // When the thread is free, the spinner's redraws give the time so far.
  await new Promise((r) => setTimeout(r, 250));
  assert.match(t.text(), /create session: unet 0\.\d s$/);
  p.log('a warning');
  assert.ok(t.text().includes('\r\u001b[2Ka warning\n'), 'the spinner line is cleared first');
  p.phase({ phase: 'session:unet', state: 'end', elapsedMs: 22_205 });
  assert.match(t.text(), /✔ create session: unet 22\.2 s\n/);
  p.finish('wrote out.png');
  assert.match(t.text(), /wrote out\.png\n$/);
});

test('in a pipe: no spinner, no phase lines; messages still go out', () => {
  let text = '';
  const stream = { isTTY: false, write: (s: string) => ((text += s), true) } as unknown as NodeJS.WriteStream;
  const p = new Progress(stream);
  p.phase({ phase: 'session:unet', state: 'start', elapsedMs: 0 });
  p.phase({ phase: 'session:unet', state: 'end', elapsedMs: 5000 });
  p.log('a warning');
  p.finish('wrote out.png');
  assert.equal(text, 'a warning\nwrote out.png\n');
});
