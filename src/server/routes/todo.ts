/** todo-sd's own endpoints, for its page: the limits, and ToDo's FLOP-ideal speed-up for a size. */
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../app.js';
import { RequestError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { SPEEDUP_SCHEMA } from '../schemas.js';
import { modelAttentionLevels, todoAttention } from '../settings.js';

export function registerTodoRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/todo-sd/v1/limits', async () => ({ ...LIMITS, maxMemoryMiB: ctx.maxMemoryMiB }));

  app.get('/todo-sd/v1/speedup', { schema: { querystring: SPEEDUP_SCHEMA } }, async (req) => {
    const q = req.query as { width: number; height: number; factor: number; max_depth: number; disable_after: number };
    const s = ctx.settings.get();
    const model = ctx.registry.resolve(s.sd_model_checkpoint);
    try {
      const settings = { ...s, token_downsampling_factor: q.factor, token_downsampling_max_depth: q.max_depth, token_downsampling_disable_after: q.disable_after };
      const attention = todoAttention(settings, () => modelAttentionLevels(model.path));
      return { model: model.title, factor: q.factor, max_depth: q.max_depth, disable_after: q.disable_after, ...ctx.speedup.estimate(model.path, q.width, q.height, attention) };
    } catch (e) {
      if (e instanceof RequestError) throw e;
      throw new RequestError('sd_model_checkpoint', `cannot count FLOPs for ${model.title}: ${(e as Error).message}`);
    }
  });
}
