/** A progress bar (steps, it/s, ETA) on a terminal; nothing at all when the output is a pipe or a file. */
import cliProgress from 'cli-progress';

export class Progress {
  private bar?: cliProgress.SingleBar;
  private started = 0;
  private label = '';

  constructor(private readonly stream: NodeJS.WriteStream) {}

  get enabled(): boolean {
    return Boolean(this.stream.isTTY);
  }

  /** A new label (the hires fix's second pass) closes the current bar and starts another. */
  update(step: number, total: number, label = 'denoising', unit = 'steps'): void {
    if (!this.enabled) return;
    if (this.bar && label !== this.label) {
      this.bar.stop();
      this.bar = undefined;
    }
    if (!this.bar) {
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

  finish(message: string): void {
    if (!this.enabled) return;
    this.bar?.stop();
    this.bar = undefined;
    this.stream.write(`${message}\n`);
  }
}
