/** The image bench's Markdown: whole or composed generations per method, fidelity beside each row, the measured pieces. */
import type { PassInfo } from '../pipeline/stable-diffusion.js';
import type { ComposedRecord, PartRecord } from './image-compose.js';
import type { FidelityColumns } from './image-fidelity.js';
import type { ImageRecord } from './image.js';
import type { Stats } from './speed.js';

const sec = (ms: number): string => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);
const range = (st: Stats): string => `${sec(st.medianMs)} (${sec(st.minMs)}–${sec(st.maxMs)}, n=${st.runsMs.length})`;
const evaluations = (passes: readonly PassInfo[]): string => passes.map((p) => `${p.evaluations.full} / ${p.evaluations.shallow} / ${p.evaluations.promptOnly}`).join(' + ');
const speedup = (method: string, x: number): string => (method === 'dense' ? '1.00x' : `**${x.toFixed(2)}x**`);

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const FIDELITY_HEAD = ['fidelity run: method, attention per pass', 'MSE vs dense', 'PSNR dB', 'SSIM', 'HPF (dense)'];

function fidelityCells(method: string, fidelity: readonly FidelityColumns[]): string[] {
  const f = fidelity.find((x) => x.method === method);
  if (!f) return FIDELITY_HEAD.map(() => '–');
  if ('skipped' in f) return [`${f.fidelityMethod}: not run, ${f.skipped}`, '–', '–', '–', '–'];
  const dense = f.fidelityMethod === 'dense';
  return [`${f.fidelityMethod}: ${f.passes}`, dense ? '0' : f.mse.toExponential(2), dense ? '∞' : f.psnr.toFixed(1), f.ssim.toFixed(3), `${f.hpf.toFixed(2)} (${f.denseHpf.toFixed(2)})`];
}

/**
 * Whole generations, one row per method: time and speed-up, stages, the U-Net's time per image
 * and session starts apart, U-Net runs per pass; fidelity from the trained model when given,
 * else MSE and HPF of the timed model's own images.
 */
export function imageTable(records: readonly ImageRecord[], fidelity?: readonly FidelityColumns[]): string {
  const head = ['method', 'U-Net runs per pass: whole / shallow / prompt-only', 's, median (min–max)', 'speed-up', 'repeated s (sessions kept)', 'speed-up repeated', 'text / denoise / decode s', 'U-Net s per image (sessions apart)', 'session starts s (count)'];
  const rows = records.map((r) => [
    r.method,
    evaluations(r.passes),
    range(r.total),
    speedup(r.method, r.speedup),
    range(r.repeated),
    speedup(r.method, r.repeatedSpeedup),
    `${sec(r.textMs)} / ${sec(r.denoiseMs)} / ${sec(r.decodeMs)}`,
    sec(r.unetMs),
    `${sec(r.sessionStarts.ms)} (${r.sessionStarts.count}; U-Net ${sec(r.sessionStarts.unetMs)})`,
    ...(fidelity ? fidelityCells(r.method, fidelity) : [r.mse.toExponential(2), `${r.hpf.toFixed(2)} (${r.denseHpf.toFixed(2)})`]),
  ]);
  return table([...head, ...(fidelity ? FIDELITY_HEAD : ['MSE vs dense (timed model)', 'HPF (dense)'])], rows);
}

/** Composed generations, one row per method, fidelity beside it. */
export function composedTable(records: readonly ComposedRecord[], fidelity?: readonly FidelityColumns[]): string {
  const head = ['method', 'U-Net runs per pass: whole / shallow / prompt-only', 'text / U-Net / decode s', 'U-Net s per image', 'composed s (sessions open)', 'U-Net session starts s', 's per generation', 'speed-up'];
  const rows = records.map((r) => [
    r.method,
    evaluations(r.passes),
    `${sec(r.textMs)} / ${sec(r.unetMs)} / ${sec(r.decodeMs)}`,
    sec(r.unetMs),
    sec(r.totalMs),
    `${sec(r.sessionStartsMs)}${r.sessionsEachGeneration ? ' (every generation, at most)' : ' (first generation only)'}`,
    `**${sec(r.generationMs)}**`,
    speedup(r.method, r.speedup),
    ...(fidelity ? fidelityCells(r.method, fidelity) : []),
  ]);
  return table([...head, ...(fidelity ? FIDELITY_HEAD : [])], rows);
}

/** Each measured piece: its median time (session starts apart) and its graph's session start. */
export function partsTable(parts: readonly PartRecord[]): string {
  return table(
    ['piece', 'median s (min–max)', 'session start s'],
    parts.map((p) => [p.part, range(p.time), p.sessionStart ? range(p.sessionStart) : '–']),
  );
}

/** Each method's U-Net schedule: per pass, how many evaluations run which piece. */
export function scheduleList(records: readonly ComposedRecord[]): string {
  return records
    .map((r) => {
      const passes = r.passes.map((p) => {
        const runs = r.schedule.filter((x) => x.pass === p.pass).map((x) => `${x.count}${x.weight > 1 ? ` × ${x.weight}` : ''} × ${x.part}`);
        return `pass ${p.pass} (${p.steps} steps): ${runs.join(' + ')}`;
      });
      return `- ${r.method}: ${passes.join('; ')}`;
    })
    .join('\n');
}
