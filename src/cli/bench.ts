/** `todo-sd bench speed` and `todo-sd bench fidelity`: measurements written as JSON, Markdown and charts. */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import { runAttentionBench } from '../bench/attention.js';
import { runFidelityBench } from '../bench/fidelity.js';
import { imageGrid } from '../bench/grid.js';
import { hiresTable, runHiresBench } from '../bench/hires.js';
import { runTiledBench, tiledTable, type TiledBenchMode } from '../bench/tiled.js';
import { machineInfo } from '../bench/machine.js';
import { profileUNet } from '../bench/profile.js';
import { fidelityTable, machineLine, matmulLine, profileTable, speedReport, type SpeedResults } from '../bench/report.js';
import { parseMethod, runMatMulBench, runSpeedBench } from '../bench/speed.js';
import { cacheDir } from '../graph/cache.js';
import { defaultPrecision } from '../graph/precision.js';
import { resolveRuntime } from '../runtime/provider.js';
import { writeFileAtomic } from '../io/atomic.js';
import { decodePngRgb, encodePng } from '../io/png.js';
import { BUILTIN_MODEL_DIR, BUILTIN_MODEL_NAME } from '../models/builtin.js';
import { writeRandomModel } from '../models/random-model.js';
import { HIRES_UPSCALERS, type HiresUpscaler } from '../pipeline/hires.js';
import { SAMPLER_NAMES, type SamplerName } from '../scheduler/index.js';
import { parseFloatOption, parseIntOption } from './options.js';
import { attentionFormOption, precisionOption, providerOption, runtimeFromFlags, type RuntimeFlags } from './runtime-flags.js';
import { parseSamplerOption, type SamplerChoice } from './sampler-option.js';

const DEFAULT_PROMPTS = new URL('../../assets/prompts.txt', import.meta.url);

function list<T>(parse: (s: string) => T): (v: string) => T[] {
  return (v) => v.split(',').map((s) => parse(s.trim()));
}

function size(v: string): [number, number] {
  const m = /^(\d+)(?:x(\d+))?$/.exec(v);
  if (!m) throw new Error(`sizes are like 512 or 768x1216; got "${v}"`);
  return [Number(m[1]), Number(m[2] ?? m[1])];
}

function write(dir: string, name: string, text: string | Uint8Array): string {
  const p = join(dir, name);
  writeFileAtomic(p, typeof text === 'string' ? Buffer.from(text) : text);
  return p;
}

/** A Markdown report (a heading, what ran, a table) written to `dir/name` and printed. */
function report(dir: string, name: string, heading: string, description: string, table: string): void {
  const md = [`# ${heading}`, '', description, '', table, ''].join('\n');
  write(dir, name, md);
  process.stdout.write(md);
}

/** The default speed model: a random SD 1.5, made once in the cache. */
function defaultSpeedModel(log: (m: string) => void): string {
  const dir = join(cacheDir(), 'models', 'random-sd15');
  if (!existsSync(join(dir, 'model_index.json'))) {
    log(`no --model given: writing a random SD 1.5 (fp16, 1.7 GB) to ${dir} once`);
    writeRandomModel(dir, 'sd15', { onProgress: (c) => log(`  ${c}…`) });
  }
  return dir;
}

export function registerBench(program: Command): void {
  const bench = program.command('bench').description('speed and fidelity of dense attention, ToDo and ToMe, side by side');
  const log = (m: string): void => void process.stderr.write(`${m}\n`);

  bench
    .command('speed')
    .description('U-Net step time per method and resolution (interleaved with dense), FLOPs, GFLOP/s, memory; attention micro-benchmark')
    .option('--model <dir>', 'model folder (default: a random SD 1.5 made once in the cache)')
    .option('--sizes <list>', 'image sizes, e.g. 512,768,1024 or 768x1216', list(size), [[512, 512], [768, 768], [1024, 1024]])
    .option('--batch <n>', 'batch size', parseIntOption('--batch', 1, 64), 1)
    .option('--methods <list>', 'dense, todo-2, todo-3, todo-4, todo-auto, todo-2-l2, tome-0.5, tome-0.75', list(parseMethod), ['dense', 'todo-2', 'todo-3', 'todo-4', 'todo-auto', 'todo-2-l2', 'tome-0.5', 'tome-0.75'].map(parseMethod))
    .option('--runs <n>', 'timed runs per method (after warm-up); with --max-seconds, an upper bound', parseIntOption('--runs', 1, 10000), 3)
    .option('--warmup <n>', 'untimed runs first', parseIntOption('--warmup', 0, 10), 1)
    .option('--max-seconds <s>', 'stop cleanly after this long, keeping what was measured', parseFloatOption('--max-seconds', 1, 1e7))
    .option('--attention <tokens>', 'attention micro-benchmark token counts (empty to skip)', (v) => (v ? v.split(',').map(Number) : []), [4096, 16384])
    .option('--matmul <n>', 'size of the MatMul ceiling measurement (0 to skip)', parseIntOption('--matmul', 0), 4096)
    .option('--one-session', 'hold one U-Net session at a time (SDXL in fp32): dense is timed in each ToDo graph with ToDo switched off')
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .addOption(providerOption())
    .addOption(precisionOption())
    .addOption(attentionFormOption())
    .option('--out <dir>', 'folder for speed.json, speed.md and charts', 'bench-results')
    .action(async (o: RuntimeFlags & { model?: string; sizes: [number, number][]; batch: number; methods: ReturnType<typeof parseMethod>[]; runs: number; warmup: number; maxSeconds?: number; oneSession?: boolean; attention: number[]; matmul: number; out: string }) => {
      mkdirSync(o.out, { recursive: true });
      const started = new Date().toISOString();
      const t0 = performance.now();
      const left = (): number | undefined => (o.maxSeconds ? Math.max(1, o.maxSeconds - (performance.now() - t0) / 1000) : undefined);
      const model = o.model ?? defaultSpeedModel(log);
      const machine = machineInfo();
      const found = await resolveRuntime({ ...runtimeFromFlags(o), onWarning: log });
      const rt = { ...found, precision: o.precision ?? defaultPrecision(found.executionProvider ?? 'cpu') };
      const matmul = o.matmul ? await runMatMulBench(o.matmul, 3, rt) : undefined;
      if (matmul) log(matmulLine(matmul));
      const speed = await runSpeedBench({ ...rt, model, sizes: o.sizes, batch: o.batch, methods: o.methods, runs: o.runs, warmup: o.warmup, maxSeconds: left(), oneSession: o.oneSession, onLog: log });
      const attention = o.attention.length ? await runAttentionBench(o.attention, o.runs, { ...rt, batch: o.batch, maxSeconds: left(), onLog: log }) : [];
      const records = [...(matmul ? [matmul] : []), ...speed.records, ...attention];
      const json = { kind: 'todo-sd speed benchmark', started, command: process.argv.slice(2).join(' '), model, machine, provider: rt.executionProvider, precision: rt.precision, stoppedEarly: speed.stoppedEarly, records };
      write(o.out, 'speed.json', `${JSON.stringify(json, null, 2)}\n`);
      const files = speedReport(json);
      for (const [name, text] of Object.entries(files)) write(o.out, name, text);
      const md = files['speed.md']!;
      process.stdout.write(md);
    });

  bench
    .command('hires')
    .description('whole hires-fix generations (both passes, upscale, decode): dense vs ToDo in the second pass, interleaved medians')
    .option('--model <dir>', 'model folder (default: a random SD 1.5 made once in the cache)')
    .option('--size <px>', 'first-pass size, e.g. 512 or 512x768', size, [512, 512] as [number, number])
    .option('--scale <x>', 'hires scale', parseFloatOption('--scale', 1, 8), 2)
    .option('--steps <n>', 'first-pass steps', parseIntOption('--steps', 1, 1000), 4)
    .option('--hires-steps <n>', 'second-pass steps before the strength cut', parseIntOption('--hires-steps', 1, 1000), 4)
    .option('--denoise <s>', 'second-pass strength', parseFloatOption('--denoise', 0.01, 1), 0.5)
    .addOption(new Option('--upscaler <name>', 'hires upscaler').choices(HIRES_UPSCALERS).default('latent'))
    .addOption(new Option('--sampler <name>', 'sampler').choices(SAMPLER_NAMES).default('ddim'))
    .option('--cfg <scale>', 'guidance scale', parseFloatOption('--cfg', 0, 100), 7)
    .option('--methods <list>', 'second-pass methods compared with dense', list(parseMethod), [parseMethod('todo-auto')])
    .option('--runs <n>', 'timed generations per method', parseIntOption('--runs', 1, 100), 2)
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .option('--provider <name>', 'onnxruntime execution provider: cpu, webgpu, cuda', 'cpu')
    .option('--out <dir>', 'folder for hires.json and hires.md', 'bench-results')
    .action(async (o: { model?: string; size: [number, number]; scale: number; steps: number; hiresSteps: number; denoise: number; upscaler: HiresUpscaler; sampler: SamplerName; cfg: number; methods: ReturnType<typeof parseMethod>[]; runs: number; threads?: number; provider: string; out: string }) => {
      mkdirSync(o.out, { recursive: true });
      const started = new Date().toISOString();
      const model = o.model ?? defaultSpeedModel(log);
      const machine = machineInfo();
      const records = await runHiresBench({ ...o, model, executionProvider: o.provider, onLog: log });
      const json = { kind: 'todo-sd hires benchmark', started, command: process.argv.slice(2).join(' '), model, machine, provider: o.provider, sampler: o.sampler, cfg: o.cfg, records };
      write(o.out, 'hires.json', `${JSON.stringify(json, null, 2)}\n`);
      report(o.out, 'hires.md', `Hires fix: ${started}`, `Machine: ${machineLine(machine)}, provider ${o.provider}. Model: ${model}. ${o.sampler}, CFG ${o.cfg}, ${o.upscaler} upscaler, denoise ${o.denoise}. Command: \`todo-sd ${json.command}\`.`, hiresTable(records));
    });

  bench
    .command('tiled')
    .description('whole tiled generations past the model size: MultiDiffusion txt2img or SD upscale, dense vs ToDo (per view / tile), time per step and peak memory, interleaved medians')
    .option('--model <dir>', 'model folder (default: a random SD 1.5 made once in the cache)')
    .addOption(new Option('--mode <mode>', 'multidiffusion: a txt2img canvas in views; sd-upscale: a picture upscaled and redrawn in tiles').choices(['multidiffusion', 'sd-upscale']).default('multidiffusion'))
    .option('--size <px>', 'multidiffusion: the canvas; sd-upscale: the picture before upscaling (e.g. 4096x2304, 960x540)', size, [2048, 1024] as [number, number])
    .option('--window <n>', 'multidiffusion: view side in latent pixels', parseIntOption('--window', 1, 1024), 64)
    .option('--stride <n>', 'multidiffusion: distance between views in latent pixels', parseIntOption('--stride', 1, 1024), 8)
    .option('--view-batch <n>', 'multidiffusion: views per U-Net call', parseIntOption('--view-batch', 1, 64), 1)
    .option('--init-image <file.png>', 'sd-upscale: the picture (default: a synthetic one of --size)')
    .option('--scale <x>', 'sd-upscale: scale factor', parseFloatOption('--scale', 1, 8), 4)
    .option('--tile <px>', 'sd-upscale: tile size (the request width x height)', size, [512, 512] as [number, number])
    .option('--overlap <px>', 'sd-upscale: tile overlap', parseIntOption('--overlap', 0, 1024), 64)
    .option('--strength <s>', 'sd-upscale: denoising strength of the tiles', parseFloatOption('--strength', 0.01, 1), 0.5)
    .option('--steps <n>', 'denoising steps (before the strength cut)', parseIntOption('--steps', 1, 1000), 8)
    .addOption(new Option('--sampler <name>', 'sampler').choices(SAMPLER_NAMES).default('ddim'))
    .option('--cfg <scale>', 'guidance scale', parseFloatOption('--cfg', 0, 100), 7)
    .option('--methods <list>', 'methods compared with dense (ToDo resolves per view / tile)', list(parseMethod), [parseMethod('todo-auto')])
    .option('--runs <n>', 'timed generations per method', parseIntOption('--runs', 1, 100), 2)
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .addOption(providerOption())
    .addOption(precisionOption())
    .option('--out <dir>', 'folder for tiled.json and tiled.md', 'bench-results')
    .action(async (o: RuntimeFlags & { model?: string; mode: TiledBenchMode; size: [number, number]; window: number; stride: number; viewBatch: number; initImage?: string; scale: number; tile: [number, number]; overlap: number; strength: number; steps: number; sampler: SamplerName; cfg: number; methods: ReturnType<typeof parseMethod>[]; runs: number; out: string }) => {
      mkdirSync(o.out, { recursive: true });
      const started = new Date().toISOString();
      const model = o.model ?? defaultSpeedModel(log);
      const machine = machineInfo();
      const initImage = o.initImage ? decodePngRgb(readFileSync(o.initImage), o.initImage) : undefined;
      const found = await resolveRuntime({ ...runtimeFromFlags(o), onWarning: log });
      const records = await runTiledBench({ ...found, model, mode: o.mode, size: o.size, tiling: { window: o.window, stride: o.stride, viewBatch: o.viewBatch }, scale: o.scale, tile: o.tile, overlap: o.overlap, strength: o.strength, initImage, steps: o.steps, sampler: o.sampler, cfg: o.cfg, methods: o.methods, runs: o.runs, onLog: log });
      const json = { kind: 'todo-sd tiled benchmark', started, command: process.argv.slice(2).join(' '), model, machine, provider: found.executionProvider ?? 'cpu', sampler: o.sampler, steps: o.steps, cfg: o.cfg, records };
      write(o.out, 'tiled.json', `${JSON.stringify(json, null, 2)}\n`);
      const what = o.mode === 'multidiffusion' ? `window ${o.window}, stride ${o.stride}, ${o.viewBatch} view(s) per call` : `scale ${o.scale}, tiles ${o.tile.join('x')}, overlap ${o.overlap}, strength ${o.strength}`;
      const description = `Machine: ${machineLine(machine)}, provider ${json.provider}. Model: ${model}. ${o.steps} ${o.sampler} steps, CFG ${o.cfg}; ${what}. Peak memory: the process's resident set (VmHWM) during each run. Command: \`todo-sd ${json.command}\`.`;
      report(o.out, 'tiled.md', `Tiled: ${started}`, description, tiledTable(records));
    });

  bench
    .command('report')
    .description('write speed.md and its charts again from a speed.json (e.g. after editing or merging runs)')
    .argument('<speed.json>', 'results of bench speed')
    .action((file: string) => {
      const json = JSON.parse(readFileSync(file, 'utf8')) as SpeedResults;
      for (const [name, text] of Object.entries(speedReport(json))) write(dirname(file), name, text);
      log(`wrote ${join(dirname(file), 'speed.md')}`);
    });

  bench
    .command('profile')
    .description("one U-Net run under onnxruntime's profiler: time by operator and by U-Net part")
    .option('--model <dir>', 'model folder (default: a random SD 1.5 made once in the cache)')
    .option('--size <px>', 'image size, e.g. 1024 or 768x1216', size, [1024, 1024] as [number, number])
    .option('--methods <list>', 'methods to profile', list(parseMethod), ['dense', 'todo-2'].map(parseMethod))
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .option('--out <dir>', 'folder for profile.json and profile.md', 'bench-results')
    .action(async (o: { model?: string; size: [number, number]; methods: ReturnType<typeof parseMethod>[]; threads?: number; out: string }) => {
      mkdirSync(o.out, { recursive: true });
      const model = o.model ?? defaultSpeedModel(log);
      const machine = machineInfo();
      const records = [];
      for (const m of o.methods) {
        log(`profiling ${m.label} at ${o.size.join('x')}`);
        records.push(await profileUNet(model, o.size, m.label, m.attention, { threads: o.threads }));
      }
      write(o.out, 'profile.json', `${JSON.stringify({ kind: 'todo-sd profile', machine, model, records }, null, 2)}\n`);
      const md = [`# Profile at ${o.size.join('x')}`, '', `Machine: ${machineLine(machine)}. Model: ${model}.`, '', profileTable(records), ''].join('\n');
      write(o.out, 'profile.md', md);
      process.stdout.write(md);
    });

  bench
    .command('fidelity')
    .description('images with dense attention and each method (same seeds): MSE, PSNR, SSIM, HPF and time; an image grid')
    .option('--model <dir>', `model folder (default: the built-in ${BUILTIN_MODEL_NAME})`)
    .option('--prompts <file>', 'one prompt per line (default: a small list that ships with todo-sd)')
    .option('--sizes <list>', 'square image sizes', list((v) => parseIntOption('--sizes', 8)(v)), [32, 64, 128])
    .option('--methods <list>', 'methods, dense first', list(parseMethod), ['dense', 'todo-2', 'todo-3', 'todo-auto', 'tome-0.5', 'tome-0.75'].map(parseMethod))
    .option('--steps <n>', 'denoising steps', parseIntOption('--steps', 1, 1000), 20)
    .option('--cfg <scale>', 'guidance scale', parseFloatOption('--cfg', 0, 100), 7.5)
    .option('--seed <n>', 'seed of the first prompt (the next prompts use seed+1, …)', parseIntOption('--seed', 0), 0)
    .option('--sampler <name>', 'sampler, ours or AUTOMATIC1111\'s name (default: the model scheduler)', parseSamplerOption)
    .option('--limit <n>', 'use only the first n prompts', parseIntOption('--limit', 1))
    .addOption(providerOption())
    .addOption(precisionOption())
    .addOption(attentionFormOption())
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .option('--out <dir>', 'folder for fidelity.json, fidelity.md and grids', 'bench-results')
    .action(async (o: RuntimeFlags & { model?: string; prompts?: string; sizes: number[]; methods: ReturnType<typeof parseMethod>[]; steps: number; cfg: number; seed: number; sampler?: SamplerChoice; limit?: number; out: string }) => {
      if (o.methods[0]?.label !== 'dense') o.methods.unshift(parseMethod('dense'));
      const prompts = readFileSync(o.prompts ?? DEFAULT_PROMPTS, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .slice(0, o.limit);
      if (prompts.length === 0) throw new Error(`no prompts in ${o.prompts}`);
      mkdirSync(o.out, { recursive: true });
      const started = new Date().toISOString();
      const model = o.model ?? BUILTIN_MODEL_DIR;
      const machine = machineInfo();
      const result = await runFidelityBench({ ...runtimeFromFlags(o), onWarning: log, model, prompts, sizes: o.sizes, methods: o.methods, steps: o.steps, cfg: o.cfg, seed: o.seed, sampler: o.sampler?.sampler, karras: o.sampler?.karras, onLog: log });
      const json = { kind: 'todo-sd fidelity benchmark', started, command: process.argv.slice(2).join(' '), model, machine, sampler: result.sampler, steps: o.steps, cfg: o.cfg, records: result.records };
      write(o.out, 'fidelity.json', `${JSON.stringify(json, null, 2)}\n`);
      const grids: string[] = [];
      for (const [px, rows] of result.images) {
        const grid = imageGrid(rows, { colLabels: o.methods.map((m) => m.label), rowLabels: prompts.map((_, i) => `prompt ${i + 1}`), scale: Math.max(1, Math.round(128 / px)) });
        grids.push(`fidelity-${px}.png`);
        write(o.out, `fidelity-${px}.png`, encodePng(grid));
      }
      const md = [
        `# Fidelity: ${started}`,
        '',
        `Machine: ${machineLine(machine)}. Model: ${model}. ${o.steps} ${result.sampler} steps, CFG ${o.cfg}, seeds ${o.seed}…${o.seed + prompts.length - 1}. Command: \`todo-sd ${json.command}\`.`,
        '',
        'Every image is compared with the dense-attention image of the same prompt and seed (MSE on [0, 1], PSNR, SSIM); HPF is the sharpness measure of the ToDo paper.',
        '',
        fidelityTable(result.records),
        '',
        'Prompts:',
        '',
        ...prompts.map((p, i) => `${i + 1}. ${p}`),
        '',
        ...grids.map((g) => `![${g}](${g})`),
        '',
      ].join('\n');
      write(o.out, 'fidelity.md', md);
      process.stdout.write(md);
    });
}
