/** `todo-sd bench speed` and `todo-sd bench fidelity`: measurements written as JSON, Markdown and charts. */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import { runAttentionBench } from '../bench/attention.js';
import { runFidelityBench } from '../bench/fidelity.js';
import { imageGrid } from '../bench/grid.js';
import { hiresTable, runHiresBench } from '../bench/hires.js';
import { parseImageMethod, runImageBench, withDense, type ImageHiresUpscaler, type ImageMethod } from '../bench/image.js';
import { runComposedBench } from '../bench/image-compose.js';
import { runImageFidelity } from '../bench/image-fidelity.js';
import { composedTable, imageTable, partsTable, scheduleList } from '../bench/image-report.js';
import { runTiledBench, tiledTable, type TiledBenchMode } from '../bench/tiled.js';
import { runUpscaleBench, upscaleTable } from '../bench/upscale.js';
import { UPSCALER_PRESETS, writeRandomUpscaler } from '../models/upscaler/random.js';
import { machineInfo } from '../bench/machine.js';
import { PROFILED_COMPONENTS, profileUNet, profileVAE, type ProfiledComponent } from '../bench/profile.js';
import { imageUpscaler } from './upscaler-option.js';
import { fidelityTable, machineLine, matmulLine, profileTable, speedReport, type SpeedResults } from '../bench/report.js';
import { parseMethod, runMatMulBench, runSpeedBench } from '../bench/speed.js';
import { cacheDir } from '../graph/cache.js';
import { defaultPrecision } from '../graph/precision.js';
import { resolveRuntime } from '../runtime/provider.js';
import { writeFileAtomic } from '../io/atomic.js';
import { decodeImage } from '../io/image.js';
import { encodePng } from '../io/png.js';
import { BUILTIN_MODEL_DIR, BUILTIN_MODEL_NAME } from '../models/builtin.js';
import { writeRandomModel } from '../models/random-model.js';
import { HIRES_UPSCALERS, type HiresUpscaler } from '../pipeline/hires.js';
import { SAMPLER_NAMES, type SamplerName } from '../scheduler/index.js';
import { readInputFile } from './generate.js';
import { parseFloatOption, parseIntOption } from './options.js';
import { attentionFormOption, precisionOption, providerOption, runtimeFromFlags, type RuntimeFlags } from './runtime-flags.js';
import { karrasOption, parseSamplerOption, samplerFromFlags, type SamplerChoice } from './sampler-option.js';

const DEFAULT_PROMPTS = new URL('../../assets/prompts.txt', import.meta.url);

/** The prompts of a file (default: the list that ships with todo-sd), one a line, the first `limit`. */
function readPrompts(file: string | undefined, limit: number | undefined): string[] {
  const prompts = readFileSync(file ?? DEFAULT_PROMPTS, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(0, limit);
  if (prompts.length === 0) throw new Error(`no prompts in ${file ?? DEFAULT_PROMPTS.pathname}`);
  return prompts;
}

interface ImageBenchFlags extends RuntimeFlags {
  model?: string;
  size: [number, number];
  steps: number;
  sampler?: SamplerChoice;
  karras?: boolean;
  cfg: number;
  seed: number;
  prompt: string;
  hiresScale?: number;
  hiresSteps?: number;
  hiresDenoise: number;
  hiresUpscaler: ImageHiresUpscaler;
  methods: ImageMethod[];
  taesd?: string;
  runs: number;
  warmup: boolean;
  compose?: boolean;
  splitGuidance?: boolean;
  fidelityModel?: string;
  fidelitySize: number;
  fidelityImages: number;
  fidelityMethods?: ImageMethod[];
  fidelityTaesd?: string;
  out: string;
}

/** This run's arguments as a shell would take them back (quoted where needed), for the reports. */
function commandLine(): string {
  return process.argv
    .slice(2)
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`))
    .join(' ');
}

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

/** A Markdown report (a heading, what ran, tables and notes) written to `dir/name` and printed. */
function report(dir: string, name: string, heading: string, description: string, ...sections: string[]): void {
  const md = [`# ${heading}`, '', description, '', ...sections.flatMap((x) => [x, '']), ''].join('\n');
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
  /** What a whole-generation report starts from: its folder, the start time, the model (default: the random SD 1.5) and the machine. */
  const start = (out: string, model: string | undefined): { started: string; model: string; machine: ReturnType<typeof machineInfo> } => {
    mkdirSync(out, { recursive: true });
    return { started: new Date().toISOString(), model: model ?? defaultSpeedModel(log), machine: machineInfo() };
  };

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
      const json = { kind: 'todo-sd speed benchmark', started, command: commandLine(), model, machine, provider: rt.executionProvider, precision: rt.precision, stoppedEarly: speed.stoppedEarly, records };
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
      const { started, model, machine } = start(o.out, o.model);
      const records = await runHiresBench({ ...o, model, executionProvider: o.provider, onLog: log });
      const json = { kind: 'todo-sd hires benchmark', started, command: commandLine(), model, machine, provider: o.provider, sampler: o.sampler, cfg: o.cfg, records };
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
    .option('--upscaler <name|file>', 'sd-upscale: the enlargement before the tiles: lanczos, nearest, or an upscaler model (ESRGAN, Real-ESRGAN .pth / .safetensors)', 'lanczos')
    .option('--controlnet <dir|file>', 'a ControlNet with the tile_resample preprocessor (a tile model: control_v11f1e_sd15_tile): on each SD upscale tile, or on a synthetic picture of the MultiDiffusion canvas')
    .option('--max-tiles <n>', 'sd-upscale: run the first n tiles (n >= 2) of each generation and extrapolate the rest from the median later tile', parseIntOption('--max-tiles', 2))
    .option('--taesd <file|dir>', 'decode with this TAESD instead of the VAE (the denoising measured without a decode of minutes; labelled)')
    .option('--no-batch-cond-uncond', "a guided step's halves as two calls: half the activation memory (generate's flag of that name)")
    .option('--steps <n>', 'denoising steps (before the strength cut)', parseIntOption('--steps', 1, 1000), 8)
    .addOption(new Option('--sampler <name>', 'sampler').choices(SAMPLER_NAMES).default('ddim'))
    .option('--cfg <scale>', 'guidance scale', parseFloatOption('--cfg', 0, 100), 7)
    .option('--methods <list>', 'methods compared with dense (ToDo resolves per view / tile)', list(parseMethod), [parseMethod('todo-auto')])
    .option('--runs <n>', 'timed generations per method', parseIntOption('--runs', 1, 100), 2)
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .addOption(providerOption())
    .addOption(precisionOption())
    .option('--out <dir>', 'folder for tiled.json and tiled.md', 'bench-results')
    .action(async (o: RuntimeFlags & { model?: string; mode: TiledBenchMode; size: [number, number]; window: number; stride: number; viewBatch: number; initImage?: string; scale: number; tile: [number, number]; overlap: number; strength: number; upscaler: string; controlnet?: string; maxTiles?: number; taesd?: string; batchCondUncond: boolean; steps: number; sampler: SamplerName; cfg: number; methods: ReturnType<typeof parseMethod>[]; runs: number; out: string }) => {
      const { started, model, machine } = start(o.out, o.model);
      const initImage = o.initImage ? await decodeImage(readInputFile(o.initImage, '--init-image'), { what: o.initImage }) : undefined;
      const found = await resolveRuntime({ ...runtimeFromFlags(o), onWarning: log });
      const upscaler = await imageUpscaler(o.upscaler, [], found);
      const records = await runTiledBench({ ...found, model, mode: o.mode, size: o.size, tiling: { window: o.window, stride: o.stride, viewBatch: o.viewBatch }, scale: o.scale, tile: o.tile, overlap: o.overlap, strength: o.strength, initImage, upscaler, ...(o.controlnet !== undefined && { controlnet: o.controlnet }), ...(o.maxTiles !== undefined && { maxTiles: o.maxTiles }), ...(o.taesd !== undefined && { taesd: o.taesd }), batchCondUncond: o.batchCondUncond, steps: o.steps, sampler: o.sampler, cfg: o.cfg, methods: o.methods, runs: o.runs, onLog: log });
      const json = { kind: 'todo-sd tiled benchmark', started, command: commandLine(), model, machine, provider: found.executionProvider ?? 'cpu', sampler: o.sampler, steps: o.steps, cfg: o.cfg, records };
      write(o.out, 'tiled.json', `${JSON.stringify(json, null, 2)}\n`);
      const cn = `${o.controlnet === undefined ? '' : `, ControlNet ${o.controlnet} (tile_resample)`}${o.taesd === undefined ? '' : `, decoded with TAESD ${o.taesd} (not the VAE)`}${o.batchCondUncond ? '' : ", a guided step's halves as two calls (--no-batch-cond-uncond)"}`;
      const what =
        o.mode === 'multidiffusion'
          ? `window ${o.window}, stride ${o.stride}, ${o.viewBatch} view(s) per call${cn}`
          : `scale ${o.scale} (${o.upscaler}), tiles ${o.tile.join('x')}, overlap ${o.overlap}, strength ${o.strength}${cn}${o.maxTiles === undefined ? '' : `; the first ${o.maxTiles} tiles of each generation run, the rest extrapolated (first tile + median later tile × tiles left)`}`;
      const description = `Machine: ${machineLine(machine)}, provider ${json.provider}. Model: ${model}. ${o.steps} ${o.sampler} steps, CFG ${o.cfg}; ${what}. Peak memory: the process's resident set (VmHWM) during each run. Command: \`todo-sd ${json.command}\`.`;
      report(o.out, 'tiled.md', `Tiled: ${started}`, description, tiledTable(records));
    });

  bench
    .command('upscale')
    .description('the upscaler model pass alone (ESRGAN / Real-ESRGAN): first run (session start) and timed runs')
    .option('--model <file>', 'upscaler model (.pth, .safetensors); default: a random one of --preset, made once in the cache')
    .addOption(new Option('--preset <name>', 'the random model\'s shape').choices(Object.keys(UPSCALER_PRESETS)).default('esrgan-x4'))
    .option('--size <px>', 'input size, e.g. 960x540', size, [960, 540] as [number, number])
    .option('--tile <px>', 'largest tile side in input pixels (0: the whole image at once)', parseIntOption('--tile', 0), 512)
    .option('--tile-overlap <px>', 'least overlap between tiles', parseIntOption('--tile-overlap', 0), 32)
    .option('--runs <n>', 'timed runs', parseIntOption('--runs', 1, 100), 3)
    .addOption(providerOption())
    .addOption(precisionOption())
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .option('--out <dir>', 'folder for upscale.json and upscale.md', 'bench-results')
    .action(async (o: RuntimeFlags & { model?: string; preset: string; size: [number, number]; tile: number; tileOverlap: number; runs: number; out: string }) => {
      mkdirSync(o.out, { recursive: true });
      const started = new Date().toISOString();
      let model = o.model;
      if (!model) {
        model = join(cacheDir(), 'models', `random-${o.preset}.safetensors`);
        if (!existsSync(model)) {
          log(`no --model given: writing a random ${o.preset} upscaler to ${model} once`);
          mkdirSync(dirname(model), { recursive: true });
          writeRandomUpscaler(model, UPSCALER_PRESETS[o.preset]!);
        }
      }
      const machine = machineInfo();
      const record = await runUpscaleBench({ ...runtimeFromFlags(o), model, size: o.size, tile: o.tile, overlap: o.tileOverlap, runs: o.runs, onLog: log });
      const json = { kind: 'todo-sd upscale benchmark', started, command: commandLine(), machine, provider: o.provider, precision: o.precision ?? defaultPrecision(o.provider), record };
      write(o.out, 'upscale.json', `${JSON.stringify(json, null, 2)}\n`);
      report(o.out, 'upscale.md', `Upscaler pass: ${started}`, `Machine: ${machineLine(machine)}, provider ${o.provider}, ${json.precision}. Model: ${model}. Command: \`todo-sd ${json.command}\`.`, upscaleTable(record));
    });

  bench
    .command('image')
    .description('whole generations (text encoder, U-Net steps of each pass, VAE decode) per method, interleaved medians; or --compose: composed from measured pieces; fidelity on a trained model beside each row')
    .option('--model <dir>', 'model folder (default: a random SD 1.5 made once in the cache)')
    .option('--size <px>', 'image size (the first pass with a hires fix), e.g. 512 or 512x768', size, [512, 512] as [number, number])
    .option('--steps <n>', 'denoising steps', parseIntOption('--steps', 1, 1000), 20)
    .option('--sampler <name>', "sampler, ours or AUTOMATIC1111's name (default: the model scheduler)", parseSamplerOption)
    .addOption(karrasOption())
    .option('--cfg <scale>', 'guidance scale', parseFloatOption('--cfg', 0, 100), 7)
    .option('--seed <n>', 'seed of every generation', parseIntOption('--seed', 0), 1)
    .option('--prompt <text>', 'prompt of every generation', 'a lighthouse on a cliff at dusk, detailed')
    .option('--hires-scale <x>', 'hires fix: second pass at x times the size; every part of a method applies to both passes', parseFloatOption('--hires-scale', 1, 8))
    .option('--hires-steps <n>', 'hires fix: second-pass steps before the denoise cut (default: --steps)', parseIntOption('--hires-steps', 1, 1000))
    .option('--hires-denoise <s>', 'hires fix: second-pass strength', parseFloatOption('--hires-denoise', 0.01, 1), 0.5)
    .addOption(new Option('--hires-upscaler <name>', 'hires fix: latent upscaler').choices(['latent', 'latent-nearest']).default('latent'))
    .option('--methods <list>', 'methods, parts joined by +: an attention method (dense, todo-2, todo-auto, tome-0.5, …), deepcache-N[-layer-block], ngms-SIGMA, taesd', list(parseImageMethod), ['dense', 'deepcache-3', 'todo-auto+deepcache-3', 'todo-auto+deepcache-3+ngms-1'].map(parseImageMethod))
    .option('--taesd <file|dir>', "a TAESD beside the model's VAE, for methods with +taesd")
    .option('--runs <n>', 'timed generations per method (--compose: measurements of each piece)', parseIntOption('--runs', 1, 100), 3)
    .option('--no-warmup', "skip the warm-up (each method's pieces run once first, building and caching its graphs)")
    .option('--compose', 'time each distinct piece (text encoding, each U-Net evaluation kind, VAE decode) and compose whole generations from the exact evaluation schedule: for sizes whose whole runs take hours')
    .option('--split-guidance', '--compose: time guided U-Net evaluations at batch 1 and count them twice (less memory; labelled, since generate runs batch 2)')
    .option('--fidelity-model <dir>', 'a trained model (e.g. ../shared/models/tiny-photo) on which the same methods run for the fidelity columns')
    .option('--fidelity-size <px>', 'fidelity: the first-pass side', parseIntOption('--fidelity-size', 16, 4096), 128)
    .option('--fidelity-images <n>', 'fidelity: images per method (seeds --seed, --seed + 1, …)', parseIntOption('--fidelity-images', 1, 100), 4)
    .option('--fidelity-methods <list>', 'fidelity: the method run for each of --methods, in order (e.g. todo-2 where todo-auto is off at the small size; default: the same)', list(parseImageMethod))
    .option('--fidelity-taesd <file|dir>', 'fidelity: a TAESD that fits the fidelity model, for methods with +taesd (without it their fidelity is not run)')
    .addOption(providerOption())
    .addOption(precisionOption())
    .addOption(attentionFormOption())
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .option('--out <dir>', 'folder for image.json and image.md', 'bench-results')
    .action(async (o: ImageBenchFlags) => {
      if (o.splitGuidance && !o.compose) throw new Error('--split-guidance belongs to --compose (whole generations run as generate runs them)');
      if (!o.fidelityModel && (o.fidelityMethods || o.fidelityTaesd)) throw new Error('--fidelity-methods and --fidelity-taesd need --fidelity-model (the trained model the fidelity run uses)');
      if (o.fidelityMethods && o.fidelityMethods.length !== o.methods.length) {
        throw new Error(`--fidelity-methods names one method per --methods entry, in order: ${o.methods.length} methods, ${o.fidelityMethods.length} fidelity methods`);
      }
      if (o.hiresScale === undefined && o.hiresSteps !== undefined) throw new Error('--hires-steps belongs to the hires fix: add --hires-scale');
      const { started, model, machine } = start(o.out, o.model);
      const rt = { ...runtimeFromFlags(o), onWarning: log };
      const hires = o.hiresScale === undefined ? undefined : { scale: o.hiresScale, steps: o.hiresSteps ?? o.steps, denoise: o.hiresDenoise, upscaler: o.hiresUpscaler };
      const setup = { size: o.size, steps: o.steps, ...samplerFromFlags(o), cfg: o.cfg, seed: o.seed, prompt: o.prompt, hires };
      const rows = withDense(o.methods).map((m) => ({ method: m.label, fidelity: o.fidelityMethods?.[o.methods.indexOf(m)] ?? m }));
      // The fidelity run first: seconds on a small model, and a mistake in it shows before the long part.
      const fidelity = o.fidelityModel ? await runImageFidelity({ ...rt, model: o.fidelityModel, size: o.fidelitySize, images: o.fidelityImages, prompts: readPrompts(undefined, undefined), rows, setup, taesd: o.fidelityTaesd, onLog: log }) : undefined;
      const bench = { ...rt, ...setup, model, methods: o.methods, runs: o.runs, taesd: o.taesd, onLog: log };
      const result = o.compose ? await runComposedBench({ ...bench, splitGuidance: o.splitGuidance }) : await runImageBench({ ...bench, warmup: o.warmup });
      const records = [...('parts' in result ? result.parts : []), ...result.records, ...(fidelity?.records ?? [])];
      const json = { kind: 'todo-sd image benchmark', mode: o.compose ? 'composed' : 'whole', started, command: commandLine(), model, machine, provider: rt.executionProvider ?? 'cpu', sampler: result.sampler, karras: result.karras, steps: o.steps, hires, cfg: o.cfg, seed: o.seed, prompt: o.prompt, fidelityModel: o.fidelityModel, records };
      write(o.out, 'image.json', `${JSON.stringify(json, null, 2)}\n`);
      const size = `${o.size.join('x')}${hires ? ` → ${o.size.map((v) => v * hires.scale).join('x')} (hires fix: ${hires.steps} steps at denoise ${hires.denoise}, ${hires.upscaler} upscale)` : ''}`;
      const what = `Machine: ${machineLine(machine)}, provider ${json.provider}. Model: ${model}. ${size}, ${o.steps} ${result.sampler}${result.karras ? ' Karras' : ''} steps, CFG ${o.cfg}, seed ${o.seed}; every part of a method applies to both passes (ToDo auto per pass size). Command: \`todo-sd ${json.command}\`.`;
      const fidelityNote = o.fidelityModel
        ? [`Fidelity: the methods (or those --fidelity-methods gives for them) on ${o.fidelityModel} at ${o.fidelitySize} px${hires ? ' (first pass; the hires fix scales it as above)' : ''}, ${o.fidelityImages} seeds from ${o.seed}, the same sampler, steps and CFG; MSE, PSNR and SSIM against the dense image of the same seed; the attention each pass used is listed.`]
        : [];
      if ('parts' in result) {
        const split = o.splitGuidance ? ' **Guided U-Net evaluations were timed at batch 1 and counted twice (--split-guidance); generate runs them at batch 2.**' : '';
        const description = `**Composed from measured parts**, not whole runs: each distinct piece below was timed ${o.runs} time(s), the methods taking turns, session starts apart; a generation is text + Σ count × the piece's median over its exact U-Net schedule + decode. "Per generation" adds the U-Net's session starts where every generation pays them: passes of two sizes whose sessions cannot both stay in memory (an upper bound: a session that outlives the other pass is counted too); otherwise only the first generation pays them.${split} ${what}`;
        report(o.out, 'image.md', `Whole generations composed from measured parts: ${started}`, description, composedTable(result.records, fidelity?.columns), ...fidelityNote, '## Measured parts', partsTable(result.parts), '## U-Net schedules', scheduleList(result.records));
      } else {
        const description = `Each time covers text encoding, every U-Net step of each pass (and the hires upscale) and the VAE decode, the model loaded; the methods take turns, after a warm-up of each method's pieces. Session starts inside a generation (where a hires fix cannot keep both sizes' U-Net sessions in memory it opens them again each generation, as it does for users) are in the times and shown apart; "U-Net s per image" is the denoising less the U-Net's session starts. ${what}`;
        report(o.out, 'image.md', `Whole generations: ${started}`, description, imageTable(result.records, fidelity?.columns), ...fidelityNote);
      }
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
    .description("one model call under onnxruntime's profiler: a U-Net (SD 1.x/2.x, SDXL) or the VAE's decoder or encoder; time by operator and by part, GFLOP/s per operator and overall")
    .option('--model <dir>', 'model folder (default: a random SD 1.5 made once in the cache)')
    .addOption(new Option('--component <name>', 'what to profile').choices(PROFILED_COMPONENTS).default('unet'))
    .option('--size <px>', 'image size, e.g. 1024 or 768x1216', size, [1024, 1024] as [number, number])
    .option('--batch <n>', 'batch (a U-Net: 2 for both guidance halves)', parseIntOption('--batch', 1, 64), 1)
    .option('--runs <n>', 'runs, the last one read (the first ones warm the allocator up)', parseIntOption('--runs', 1, 100), 2)
    .option('--methods <list>', 'attention methods to profile (a U-Net)', list(parseMethod), ['dense', 'todo-2'].map(parseMethod))
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .option('--out <dir>', 'folder for profile.json and profile.md', 'bench-results')
    .action(async (o: { model?: string; component: ProfiledComponent; size: [number, number]; batch: number; runs: number; methods: ReturnType<typeof parseMethod>[]; threads?: number; out: string }, cmd: Command) => {
      if (o.component !== 'unet' && cmd.getOptionValueSource('methods') === 'cli') {
        throw new Error(`--methods applies to a U-Net; the ${o.component} has no attention variants (drop --methods, or use --component unet)`);
      }
      mkdirSync(o.out, { recursive: true });
      const model = o.model ?? defaultSpeedModel(log);
      const machine = machineInfo();
      const rt = { threads: o.threads };
      const records = [];
      const where = `${o.size.join('x')}, batch ${o.batch}`;
      if (o.component === 'unet') {
        for (const m of o.methods) {
          log(`profiling the U-Net with ${m.label} at ${where}`);
          records.push(await profileUNet(model, o.size, m.label, m.attention, rt, { batch: o.batch, runs: o.runs }));
        }
      } else {
        const part = o.component === 'vae-decoder' ? 'decoder' : 'encoder';
        log(`profiling the VAE ${part} at ${where}`);
        records.push(await profileVAE(model, part, o.size, rt, { batch: o.batch, runs: o.runs }));
      }
      write(o.out, 'profile.json', `${JSON.stringify({ kind: 'todo-sd profile', command: commandLine(), machine, model, records }, null, 2)}\n`);
      const md = [`# Profile of the ${o.component} at ${where}`, '', `Machine: ${machineLine(machine)}. Model: ${model}. The last of ${o.runs} runs. Command: \`todo-sd ${commandLine()}\`.`, '', profileTable(records), ''].join('\n');
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
    .addOption(karrasOption())
    .option('--limit <n>', 'use only the first n prompts', parseIntOption('--limit', 1))
    .addOption(providerOption())
    .addOption(precisionOption())
    .addOption(attentionFormOption())
    .option('--threads <n>', 'CPU threads per operator', parseIntOption('--threads', 1, 1024))
    .option('--out <dir>', 'folder for fidelity.json, fidelity.md and grids', 'bench-results')
    .action(async (o: RuntimeFlags & { model?: string; prompts?: string; sizes: number[]; methods: ReturnType<typeof parseMethod>[]; steps: number; cfg: number; seed: number; sampler?: SamplerChoice; karras?: boolean; limit?: number; out: string }) => {
      if (o.methods[0]?.label !== 'dense') o.methods.unshift(parseMethod('dense'));
      const withForm = o.methods.find((m) => m.attentionForm);
      if (withForm) throw new Error(`fidelity: "${withForm.label}": attention forms are exact and give the same images; compare them with bench speed (or set --attention-form for the whole run)`);
      const prompts = readPrompts(o.prompts, o.limit);
      mkdirSync(o.out, { recursive: true });
      const started = new Date().toISOString();
      const model = o.model ?? BUILTIN_MODEL_DIR;
      const machine = machineInfo();
      const methods = o.methods.map((m) => ({ label: m.label, options: { attention: m.attention } }));
      const result = await runFidelityBench({ ...runtimeFromFlags(o), onWarning: log, model, prompts, sizes: o.sizes, methods, steps: o.steps, cfg: o.cfg, seed: o.seed, ...samplerFromFlags(o), onLog: log });
      const json = { kind: 'todo-sd fidelity benchmark', started, command: commandLine(), model, machine, sampler: result.sampler, steps: o.steps, cfg: o.cfg, records: result.records };
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
