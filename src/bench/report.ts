/** Benchmark results as Markdown tables and an SVG chart. */
import type { AttentionOptions } from '../attention/options.js';
import type { AttentionRecord } from './attention.js';
import { lineChartSvg } from './chart.js';
import type { FidelityRecord } from './fidelity.js';
import type { MachineInfo } from './machine.js';
import type { ProfileRecord } from './profile.js';
import type { MatMulRecord, UNetRecord } from './speed.js';

const s = (ms: number): string => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);
const x = (v: number): string => `${v.toFixed(2)}x`;
const tflop = (f: number): string => (f / 1e12).toFixed(2);

export function machineLine(m: MachineInfo): string {
  return `${m.gpu ? `${m.gpu} with ` : ''}${m.cpu}, ${m.cores} cores (${m.flags.join(', ') || 'no AVX flags seen'}), ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, onnxruntime-node ${m.onnxruntime}${m.malloc ? `, ${m.malloc}` : ''}`;
}

function table(head: string[], rows: (string | number)[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function speedTable(records: readonly UNetRecord[], matmul?: MatMulRecord): string {
  const rows = records.map((r) => [
    `${r.size[0]}x${r.size[1]}`,
    r.batch,
    // Records written before attention forms were recorded have none.
    r.attentionForms?.chunked ? `${r.method} (${r.attentionForms.chunked} chunked)` : r.method,
    `${s(r.step.medianMs)} (${s(r.step.minMs)}–${s(r.step.maxMs)}, n=${r.step.runsMs.length})`,
    r.method === 'dense' ? '1.00x' : `**${x(r.speedup)}**`,
    x(r.flopIdealSpeedup),
    `${Math.round(r.ofIdeal * 100)}%`,
    `${tflop(r.flops.total)} (${Math.round((100 * r.flops.attention) / r.flops.total)}% attn)`,
    `${Math.round(r.achievedGflops)}${matmul ? ` (${Math.round((100 * r.achievedGflops) / matmul.gflops)}%)` : ''}`,
    r.topLevelKeys,
    (r.peakMiB / 1024).toFixed(1),
    `${Math.round(r.buildMs)} / ${s(r.sessionMs)} / ${r.firstRunMs === undefined ? '–' : s(r.firstRunMs)}`,
  ]);
  return table(
    ['size', 'batch', 'method', 'step s, median (min–max)', 'speed-up', 'FLOP-ideal', 'of ideal', 'TFLOP', 'GFLOP/s (of MatMul)', 'top-level keys', 'peak GiB', 'build ms / session s / first run s'],
    rows,
  );
}

export function matmulLine(m: MatMulRecord): string {
  return `onnxruntime MatMul ${m.n}x${m.n}x${m.n}: ${s(m.step.medianMs)} s median of ${m.step.runsMs.length}, **${Math.round(m.gflops)} GFLOP/s**`;
}

export function attentionTable(records: readonly AttentionRecord[]): string {
  return table(
    ['tokens', 'kernel', 'keys/values', 'median s (min–max)', 'GFLOP/s', 'vs flash'],
    records.map((r) => {
      const flash = records.find((f) => f.tokens === r.tokens && f.kernel === 'flash');
      return [
        r.tokens,
        r.kernel,
        r.keys,
        r.skipped ? `not run: ${r.skipped}` : `${s(r.step.medianMs)} (${s(r.step.minMs)}–${s(r.step.maxMs)})`,
        r.skipped ? '–' : Math.round(r.gflops),
        r.skipped || !flash ? '–' : x(flash.step.medianMs / r.step.medianMs),
      ];
    }),
  );
}

export function fidelityTable(records: readonly FidelityRecord[]): string {
  const groups = new Map<string, FidelityRecord[]>();
  for (const r of records) {
    const k = `${r.size}|${r.method}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const mean = (rs: FidelityRecord[], f: (r: FidelityRecord) => number): number => rs.reduce((a, r) => a + f(r), 0) / rs.length;
  return table(
    ['size', 'method', 'MSE vs dense', 'PSNR dB', 'SSIM', 'HPF (dense)', 's / image', 'images'],
    [...groups.values()].map((rs) => [
      `${rs[0]!.size}px`,
      rs[0]!.method,
      rs[0]!.method === 'dense' ? '0' : mean(rs, (r) => r.mse).toExponential(2),
      rs[0]!.method === 'dense' ? '∞' : mean(rs, (r) => Math.min(r.psnr, 99)).toFixed(1),
      mean(rs, (r) => r.ssim).toFixed(3),
      `${mean(rs, (r) => r.hpf).toFixed(2)} (${mean(rs, (r) => r.denseHpf).toFixed(2)})`,
      mean(rs, (r) => r.seconds).toFixed(2),
      rs.length,
    ]),
  );
}

/** Step time (log scale) and speed-up against the image side, one line per method; a chart only where there is something to draw. */
export function speedCharts(records: readonly UNetRecord[]): Record<string, string> {
  const methods = [...new Set(records.map((r) => r.method))];
  const series = (f: (r: UNetRecord) => number, only?: (m: string) => boolean) =>
    methods
      .filter((m) => !only || only(m))
      .map((m) => ({ name: m, points: records.filter((r) => r.method === m).map((r) => [r.size[0], f(r)] as [number, number]) }))
      .filter((se) => se.points.length > 0);
  const sizes = [...new Set(records.map((r) => r.size[0]))].sort((a, b) => a - b);
  const charts: Record<string, string> = {};
  if (records.length) {
    charts['speed-time.svg'] = lineChartSvg({ title: 'U-Net step time (median)', xLabel: 'image side, px', yLabel: 'seconds', logY: true, xTicks: sizes, series: series((r) => r.step.medianMs / 1000) });
  }
  const speedups = [
    ...series((r) => r.speedup, (m) => m !== 'dense'),
    ...series((r) => r.flopIdealSpeedup, (m) => m === 'todo-2' || m === 'todo-auto').map((se) => ({ ...se, name: `${se.name} (FLOP-ideal)` })),
  ];
  if (speedups.length) {
    charts['speed-speedup.svg'] = lineChartSvg({ title: 'Speed-up over dense attention (same run)', xLabel: 'image side, px', yLabel: 'x dense', xTicks: sizes, series: speedups });
  }
  return charts;
}

export interface SpeedResults {
  started: string;
  command: string;
  model: string;
  machine: MachineInfo;
  /** Absent in results written before providers and precisions were recorded (CPU, fp32). */
  provider?: string;
  precision?: string;
  stoppedEarly: boolean;
  records: (UNetRecord | MatMulRecord | AttentionRecord)[];
}

/** speed.md and its charts, from the results as speed.json holds them. */
export function speedReport(r: SpeedResults): Record<string, string> {
  const unet = r.records.filter((x): x is UNetRecord => x.type === 'unet');
  const matmul = r.records.find((x): x is MatMulRecord => x.type === 'matmul');
  const attention = r.records.filter((x): x is AttentionRecord => x.type === 'attention');
  const charts = speedCharts(unet);
  const md = [
    `# Speed: ${r.started}`,
    '',
    `Machine: ${machineLine(r.machine)}. Provider: ${r.provider ?? 'cpu'}, ${r.precision ?? 'fp32'}. Model: ${r.model}. Command: \`todo-sd ${r.command}\`.${r.stoppedEarly ? ' **Stopped early by --max-seconds.**' : ''}`,
    '',
    ...(matmul ? [matmulLine(matmul), ''] : []),
    ...(unet.length ? [speedTable(unet, matmul), ''] : []),
    ...(attention.length ? [`Attention alone (8 heads x 40, batch ${attention[0]!.batch ?? 1}, ${attention[0]!.precision ?? 'fp32'}):`, '', attentionTable(attention), ''] : []),
    ...Object.keys(charts).map((f) => `![${f}](${f})`),
    '',
  ].join('\n');
  return { 'speed.md': md, ...charts };
}

/** Time by U-Net part for each profiled method, side by side (ms and share of the node time). */
export function profileTable(records: readonly ProfileRecord[]): string {
  const parts = [...new Set(records.flatMap((r) => r.byPart.map((p) => p.part)))];
  const cell = (r: ProfileRecord, part: string): string => {
    const ms = r.byPart.find((p) => p.part === part)?.ms ?? 0;
    return `${(ms / 1000).toFixed(2)} s (${Math.round((100 * ms) / r.nodeMs)}%)`;
  };
  const ops = [...new Set(records.flatMap((r) => r.byOp.slice(0, 8).map((p) => p.op)))];
  const opCell = (r: ProfileRecord, op: string): string => {
    const e = r.byOp.find((p) => p.op === op);
    if (!e) return '–';
    return `${(e.ms / 1000).toFixed(2)} s (${Math.round((100 * e.ms) / r.nodeMs)}%)${e.gflopPerS === undefined ? '' : `, ${e.gflopPerS.toFixed(0)} GFLOP/s`}`;
  };
  const rate = (r: ProfileRecord): string => `${r.gflop.toFixed(0)} GFLOP in ${(r.runMs / 1000).toFixed(2)} s: **${r.gflopPerS.toFixed(0)} GFLOP/s**`;
  return [
    table(['part', ...records.map((r) => r.method)], [...parts.map((p) => [p, ...records.map((r) => cell(r, p))]), ['**run (wall)**', ...records.map((r) => `${(r.runMs / 1000).toFixed(2)} s`)], ['math rate', ...records.map(rate)]]),
    '',
    table(['operator', ...records.map((r) => r.method)], ops.map((op) => [op, ...records.map((r) => opCell(r, op))])),
  ].join('\n');
}

/** ToDo 2, ToDo 2 + level 2 ×2, ToMe 0.5, dense: the attention as a pass used it. */
export function attentionLabel(a: AttentionOptions): string {
  if (a.method === 'tome') return `ToMe ${a.ratio}`;
  if (a.method === 'dense') return 'dense';
  const extra = [(a.level2Factor ?? 1) > 1 ? `level 2 ×${a.level2Factor}` : '', a.mode && a.mode !== 'nearest' ? a.mode : '', (a.stopAt ?? 1) < 1 ? `until ${a.stopAt}` : ''].filter(Boolean);
  return `ToDo ${a.factor}${extra.length ? ` (${extra.join(', ')})` : ''}`;
}
