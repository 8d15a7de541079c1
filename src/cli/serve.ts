/** `todo-sd serve`: the A1111-compatible HTTP API and the web page; `todo-sd worker`: a Redis worker. */
import { Command, InvalidArgumentError } from 'commander';
import { createServer } from '../server/app.js';
import { DEFAULT_MEMORY_MIB } from '../server/limits.js';
import { ModelRegistry } from '../server/models.js';
import { LocalQueue } from '../server/queue-local.js';
import { RedisQueue, RedisWorker } from '../server/queue-redis.js';
import { ThreadRunner } from '../server/runner-thread.js';
import { parseIntOption } from './options.js';

interface ServeFlags {
  modelsDir?: string;
  model?: string;
  port: number;
  listen?: boolean;
  apiAuth?: { user: string; pass: string }[];
  redis?: string;
  outputs: string;
  maxMemory: number;
  provider: string;
  threads?: number;
  taesd?: string;
}

const TAESD_HELP = 'TAESD for live previews (show_progress_type "TAESD"): taesd_decoder.safetensors, a diffusers AutoencoderTiny folder, or a folder with one per family (default: <models-dir>/VAE-approx)';

function parseAuth(v: string): { user: string; pass: string }[] {
  return v.split(',').map((pair) => {
    const i = pair.indexOf(':');
    if (i < 1 || i === pair.length - 1) throw new InvalidArgumentError(`--api-auth takes user:pass[,user2:pass2]; "${pair}" has no user or password`);
    return { user: pair.slice(0, i), pass: pair.slice(i + 1) };
  });
}

function parseRedisUrl(v: string): string {
  if (!/^rediss?:\/\//.test(v)) throw new InvalidArgumentError(`--redis takes a URL such as redis://127.0.0.1:6379; got "${v}"`);
  return v;
}

const log = (m: string): void => void process.stderr.write(`${m}\n`);

/**
 * SIGTERM/SIGINT: stop taking work, finish (or hand back) the current job, then exit. Installed
 * before the ready line is printed: a signal sent on seeing it must not meet the default action.
 */
function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = (signal: string): void => {
    if (closing) return;
    closing = true;
    log(`${signal}: finishing the current job, then stopping`);
    close().then(
      () => process.exit(0),
      (e: Error) => {
        log(`error while stopping: ${e.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve the AUTOMATIC1111-compatible HTTP API (/sdapi/v1) and a web page')
    .option('--models-dir <dir>', 'folder of models (diffusers folders, .safetensors / .ckpt checkpoints; LoRAs in Lora/, upscalers in ESRGAN/ and RealESRGAN/); the built-in model is always there')
    .option('--model <name>', 'model to start with (a name from --models-dir; default: the built-in model)')
    .option('--port <n>', 'port', parseIntOption('--port', 0, 65535), 7860)
    .option('--listen', 'listen on all interfaces (default: 127.0.0.1 only)')
    .option('--api-auth <user:pass,...>', 'require HTTP basic auth with one of these users', parseAuth)
    .option('--redis <url>', 'queue jobs on Redis (BullMQ) for `todo-sd worker` processes, e.g. redis://127.0.0.1:6379', parseRedisUrl)
    .option('--outputs <dir>', 'where save_images writes PNGs', 'outputs')
    .option('--max-memory <MiB>', 'memory one job may use; bigger jobs are refused before they start', parseIntOption('--max-memory', 64), DEFAULT_MEMORY_MIB)
    .option('--provider <name>', 'onnxruntime execution provider: cpu, webgpu, cuda', 'cpu')
    .option('--threads <n>', 'CPU threads per operator (default: all cores)', parseIntOption('--threads', 1, 1024))
    .option('--taesd <file|dir>', TAESD_HELP)
    .action(async (f: ServeFlags) => {
      const registry = new ModelRegistry(f.modelsDir);
      const runtime = { executionProvider: f.provider, threads: f.threads, onWarning: log };
      const queue = f.redis ? await RedisQueue.connect(f.redis, log) : new LocalQueue(new ThreadRunner(registry, runtime, { taesd: f.taesd }));
      const host = f.listen ? '0.0.0.0' : '127.0.0.1';
      const app = await createServer({
        registry,
        queue,
        model: f.model,
        apiAuth: f.apiAuth,
        outputsDir: f.outputs,
        maxMemoryMiB: f.maxMemory,
        log,
        flags: { listen: Boolean(f.listen), port: f.port, api_auth: f.apiAuth ? '(set)' : null, redis: f.redis ?? null, outputs: f.outputs, max_memory: f.maxMemory, taesd: f.taesd ?? null },
      });
      onShutdown(() => app.close());
      const url = await app.listen({ host, port: f.port });
      log(`todo-sd serving on ${url} (${f.redis ? `jobs on ${f.redis}` : 'one worker thread'}); A1111 clients: ${url}/sdapi/v1`);
    });

  program
    .command('worker')
    .description('run jobs from a `todo-sd serve --redis` server (any number of workers, on any machine)')
    .requiredOption('--redis <url>', 'the Redis the server queues on, e.g. redis://127.0.0.1:6379', parseRedisUrl)
    .option('--models-dir <dir>', 'folder of models, with the same names as the server sees')
    .option('--provider <name>', 'onnxruntime execution provider: cpu, webgpu, cuda', 'cpu')
    .option('--threads <n>', 'CPU threads per operator (default: all cores)', parseIntOption('--threads', 1, 1024))
    .option('--lock-duration <ms>', "a dead worker's job goes to another worker after about twice this", parseIntOption('--lock-duration', 500), 30_000)
    .option('--taesd <file|dir>', TAESD_HELP)
    .action(async (f: Pick<ServeFlags, 'modelsDir' | 'provider' | 'threads' | 'taesd'> & { redis: string; lockDuration: number }) => {
      const registry = new ModelRegistry(f.modelsDir);
      const runner = new ThreadRunner(registry, { executionProvider: f.provider, threads: f.threads, onWarning: log }, { taesd: f.taesd });
      const worker = await RedisWorker.start(f.redis, runner, { lockDurationMs: f.lockDuration }, log);
      onShutdown(() => worker.close());
      log(`todo-sd worker ${worker.id} taking jobs from ${f.redis}`);
    });
}
