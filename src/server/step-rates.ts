/**
 * Measured speed: the mean time of a job's denoising steps per pass, and the comparison with a
 * dense job of the same shape run earlier in this server's life. A step is counted only when
 * nothing else happened since the previous one: the first step after a phase (prompt encoding,
 * graph building, session creation) pays for it and is left out.
 */
import type { PhaseEvent } from '../runtime/progress.js';
import type { JobSpec, PassTiming } from './jobs.js';

/** Collects a job's step times per pass (1, or 2 for the hires fix's second pass). */
export class StepClock {
  private last = performance.now();
  private afterPhase = true;
  private readonly sums = new Map<number, { ms: number; steps: number }>();

  phase(e: PhaseEvent): void {
    if (e.state === 'end') this.afterPhase = true;
    this.last = performance.now();
  }

  step(pass: number): void {
    const now = performance.now();
    if (!this.afterPhase) {
      const s = this.sums.get(pass) ?? { ms: 0, steps: 0 };
      this.sums.set(pass, { ms: s.ms + (now - this.last), steps: s.steps + 1 });
    }
    this.afterPhase = false;
    this.last = now;
  }

  /** Mean step time per pass, for the passes with at least one clean step. */
  passes(job: Pick<JobSpec, 'width' | 'height' | 'hires'>): PassTiming[] {
    return [...this.sums.entries()].map(([pass, s]) => {
      const scale = pass === 2 ? (job.hires?.scale ?? 1) : 1;
      return { pass, width: Math.round(job.width * scale), height: Math.round(job.height * scale), stepMs: s.ms / s.steps, steps: s.steps };
    });
  }
}

export interface MeasuredPass extends PassTiming {
  /** Mean step time of the last dense job of this shape (model, size, guidance, sampler, ControlNets, tiling), when there was one. */
  denseStepMs: number | null;
  /** denseStepMs / stepMs. */
  measuredSpeedup: number | null;
}

/** The dense step times seen so far, by shape; a job with no speed method sets them, others are compared with them. */
export class DenseRates {
  private readonly rates = new Map<string, number>();

  compare(job: JobSpec, dense: boolean, passes: readonly PassTiming[]): MeasuredPass[] {
    return passes.map((p) => {
      // ControlNet units and tiling change what a step costs without being speed methods: part of the shape.
      const key = JSON.stringify([job.model, p.width, p.height, job.cfg > 1, job.sampler, job.controlnets?.length ?? 0, job.tiling ?? null, job.sdUpscale !== undefined]);
      if (dense) this.rates.set(key, p.stepMs);
      const denseStepMs = this.rates.get(key) ?? null;
      return { ...p, denseStepMs, measuredSpeedup: denseStepMs === null ? null : denseStepMs / p.stepMs };
    });
  }
}
