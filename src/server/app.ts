/**
 * The HTTP server: Fastify with JSON-schema validation, A1111's error shapes (errors.ts), optional basic
 * auth (A1111's --api-auth), bounded bodies, the web page at `/`, and the API routes.
 */
import { timingSafeEqual } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import basicAuth from '@fastify/basic-auth';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { errorReply } from './errors.js';
import type { JobQueue } from './jobs.js';
import { DEFAULT_MEMORY_MIB, LIMITS } from './limits.js';
import type { ModelRegistry } from './models.js';
import { registerControlNetRoutes } from './routes/controlnet.js';
import { registerExtras } from './routes/extras.js';
import { registerSdapi } from './routes/sdapi.js';
import { registerTodoRoutes } from './routes/todo.js';
import { ServerSettings } from './settings.js';
import { SpeedupEstimator } from './speedup.js';
import { DenseRates } from './step-rates.js';

export interface ServerOptions {
  registry: ModelRegistry;
  queue: JobQueue;
  /** The model to start with (name or title); default: the built-in one. */
  model?: string;
  /** user:pass pairs; when given, every request needs HTTP basic auth. */
  apiAuth?: { user: string; pass: string }[];
  /** Where `save_images` writes (atomically). */
  outputsDir: string;
  /** Memory one job may use, MiB. */
  maxMemoryMiB?: number;
  /** Facts for GET /sdapi/v1/cmd-flags. */
  flags?: Record<string, unknown>;
  /** Where server errors (500s) are reported. */
  log?: (message: string) => void;
}

/** Both the source (src/server) and the build (dist/server) find the page in src/web. */
export const WEB_DIR = fileURLToPath(new URL('../../src/web/', import.meta.url));

export interface ServerContext extends Required<Omit<ServerOptions, 'apiAuth' | 'model' | 'log'>> {
  settings: ServerSettings;
  speedup: SpeedupEstimator;
  denseRates: DenseRates;
}

const same = (a: string, b: string): boolean => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

export async function createServer(o: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({ bodyLimit: LIMITS.bodyBytes, ajv: { customOptions: { allErrors: true, allowUnionTypes: true } } });
  const ctx: ServerContext = {
    registry: o.registry,
    queue: o.queue,
    outputsDir: o.outputsDir,
    maxMemoryMiB: o.maxMemoryMiB ?? DEFAULT_MEMORY_MIB,
    flags: o.flags ?? {},
    settings: new ServerSettings(o.registry, o.model ?? o.registry.list()[0]!.name),
    speedup: new SpeedupEstimator(),
    denseRates: new DenseRates(),
  };

  if (o.apiAuth?.length) {
    const users = o.apiAuth;
    await app.register(basicAuth, {
      authenticate: { realm: 'todo-sd' },
      validate: async (user, pass) => {
        if (!users.some((u) => same(u.user, user) && same(u.pass, pass))) throw new Error('wrong user name or password');
      },
    });
    app.addHook('onRequest', app.basicAuth);
  }

  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const { status, body, internal } = errorReply(err, LIMITS.bodyBytes / 2 ** 20);
    if (internal) o.log?.(`error: ${err.stack ?? err.message}`);
    return reply.status(status).send(body);
  });

  await app.register(fastifyStatic, { root: WEB_DIR, prefix: '/' });
  registerSdapi(app, ctx);
  registerExtras(app, ctx);
  registerControlNetRoutes(app, ctx);
  registerTodoRoutes(app, ctx);
  app.addHook('onClose', () => o.queue.close());
  return app;
}
