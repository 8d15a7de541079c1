/**
 * What a generation shows while it runs. On a terminal: each slow phase (loading, graph
 * building, session creation, encoding, decoding) as a spinner with its elapsed time, then a
 * line with its duration, and a bar (steps, it/s, ETA) while denoising. In a pipe or a file:
 * nothing. With `--json-events`: one JSON object per line instead (see JsonEvents).
 */
import cliProgress from 'cli-progress';
import type { StepInfo } from '../pipeline/stable-diffusion.js';
import { phaseLabel, type PhaseEvent } from '../runtime/progress.js';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/** Phases shorter than this leave no line behind (a tokenizer's 2 ms would only be noise). */
const KEEP_MS = 250;

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

export class Progress {
  private bar?: cliProgress.SingleBar;
  private started = 0;
  private label = '';
  /** Phases in progress, innermost last, with when they started. */
  private readonly phases: { phase: string; t0: number }[] = [];
  private spinner?: NodeJS.Timeout;
  private frame = 0;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  get enabled(): boolean {
    return Boolean(this.stream.isTTY);
  }

  /** A phase starts or ends: the spinner line shows the innermost one. */
  phase(e: PhaseEvent): void {
    if (!this.enabled) return;
    this.closeBar();
    if (e.state === 'start') {
      this.phases.push({ phase: e.phase, t0: performance.now() - e.elapsedMs });
      this.spinner ??= setInterval(() => this.draw(true), 100).unref();
    } else {
      const i = this.phases.map((p) => p.phase).lastIndexOf(e.phase);
      if (i >= 0) this.phases.splice(i, 1);
      this.clearLine();
      if (e.elapsedMs >= KEEP_MS) this.stream.write(`✔ ${phaseLabel(e.phase)} ${seconds(e.elapsedMs)}\n`);
      if (!this.phases.length) this.stopSpinner();
    }
    this.draw();
  }

  /** A new label (the hires fix's second pass) closes the current bar and starts another. */
  update(step: number, total: number, label = 'denoising', unit = 'steps'): void {
    if (!this.enabled) return;
    if (this.bar && label !== this.label) this.closeBar();
    if (!this.bar) {
      this.clearLine();
      this.label = label;
      this.bar = new cliProgress.SingleBar(
        { stream: this.stream, format: `${label.padEnd(10)} |{bar}| {value}/{total} ${unit} | {rate} it/s | ETA {eta_formatted}`, hideCursor: true, etaBuffer: 4 },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, 0, { rate: '-' });
      this.started = performance.now();
    }
    const rate = step / ((performance.now() - this.started) / 1000);
    this.bar.update(step, { rate: rate.toFixed(2) });
  }

  /** A message of its own line, above the spinner. */
  log(message: string): void {
    if (this.enabled && (this.phases.length || this.bar)) {
      this.closeBar();
      this.clearLine();
    }
    this.stream.write(`${message}\n`);
    if (this.enabled) this.draw();
  }

  /** Ends the display: the bar and any spinner stop, `message` (if any) gets its own line. */
  finish(message?: string): void {
    if (this.enabled) {
      this.closeBar();
      this.stopSpinner();
      this.clearLine();
    }
    if (message) this.stream.write(`${message}\n`);
  }

  /**
   * The innermost phase. onnxruntime holds this thread while it creates a session or runs a
   * graph, so the spinner cannot turn then: a phase's first line shows no time that would
   * stand still; the timer's redraws (`ticking`) add the time so far.
   */
  private draw(ticking = false): void {
    const top = this.phases[this.phases.length - 1];
    if (!top || this.bar) return;
    this.frame = (this.frame + 1) % SPINNER.length;
    const time = ticking ? seconds(performance.now() - top.t0) : '…';
    this.stream.write(`\r\x1b[2K${SPINNER[this.frame]} ${phaseLabel(top.phase)} ${time}`);
  }

  private clearLine(): void {
    this.stream.write('\r\x1b[2K');
  }

  private closeBar(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  private stopSpinner(): void {
    clearInterval(this.spinner);
    this.spinner = undefined;
  }
}

/** `--json-events`: every event as one JSON line, `at` in ms since the command started. */
export class JsonEvents {
  private readonly t0 = performance.now();

  constructor(private readonly stream: NodeJS.WritableStream) {}

  emit(event: string, fields: Record<string, unknown>): void {
    this.stream.write(`${JSON.stringify({ event, at: Math.round(performance.now() - this.t0), ...fields })}\n`);
  }
}

/** How a command reports as it runs: messages, phases, steps; on a terminal or as JSON lines. */
export interface Reporter {
  log: (message: string) => void;
  onProgress: (e: PhaseEvent) => void;
  onStep: (s: StepInfo) => void;
  /** The end of the run: the display stops; `summary` is the last event (JSON lines), `line` the last line (otherwise). */
  done: (summary: Record<string, unknown>, line?: string) => void;
  /** A failure: as an `error` event with --json-events (returns true: reported), else false (the caller's usual message). */
  failed: (e: unknown) => boolean;
}

export function reporter(stream: NodeJS.WriteStream, jsonEvents: boolean): Reporter {
  if (jsonEvents) {
    const events = new JsonEvents(stream);
    return {
      log: (text) => events.emit('message', { text }),
      onProgress: (e) => events.emit('phase', { ...e, elapsedMs: Math.round(e.elapsedMs) }),
      onStep: (s) => events.emit('step', { phase: s.phase, pass: s.pass ?? 1, ...(s.tile && { tile: s.tile }), step: s.step, total: s.total }),
      done: (summary) => events.emit('done', summary),
      failed: (e) => {
        events.emit('error', { message: e instanceof Error ? e.message : String(e) });
        return true;
      },
    };
  }
  const progress = new Progress(stream);
  return {
    log: (m) => progress.log(m),
    onProgress: (e) => progress.phase(e),
    // The VAE decode has its own phase line; the step after it only marks the end. SD upscale: a bar per tile; an upscaler model counts its tiles.
    onStep: (s) =>
      s.phase !== 'decode' &&
      progress.update(s.step, s.total, s.tile ? `tile ${s.tile.index + 1}/${s.tile.count}` : { hires: 'hires pass', upscale: 'upscaling', denoise: 'denoising' }[s.phase], s.phase === 'upscale' ? 'tiles' : 'steps'),
    done: (_summary, line) => progress.finish(line),
    failed: () => {
      progress.finish();
      return false;
    },
  };
}
