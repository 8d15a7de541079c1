/**
 * The execution provider that works here, found once per process by opening a one-node graph
 * with it. Loaders resolve their options through it, so that after a fallback everything that
 * defaults by provider (precision, attention form, the device loop) takes the CPU's defaults.
 */
import { GraphBuilder } from '../graph/builder.js';
import { serializeModel } from '../graph/serialize.js';
import { phase } from './progress.js';
import { checkExecutionProvider, openSession, warnOnce, type RuntimeOptions } from './session.js';

const probes = new Map<string, Promise<string | undefined>>();

/** Resolves to the fallback message, or undefined when the provider works. */
function probe(provider: string): Promise<string | undefined> {
  let p = probes.get(provider);
  if (!p) {
    const g = new GraphBuilder('probe');
    g.output(g.add(g.input('x', [1]), 1), 'y');
    p = openSession(serializeModel(g.build()), undefined, { executionProvider: provider, onWarning: () => {} }).then(async (s) => {
      await s.session.release();
      return s.fallback;
    });
    probes.set(provider, p);
  }
  return p;
}

export async function resolveRuntime(rt: RuntimeOptions): Promise<RuntimeOptions> {
  const provider = checkExecutionProvider(rt.executionProvider ?? 'cpu');
  if (provider === 'cpu') return rt;
  // Opening a GPU provider the first time can take seconds (device and driver start-up).
  const fallback = await (probes.has(provider) ? probe(provider) : phase(rt.onProgress, `probe:${provider}`, () => probe(provider)));
  if (fallback === undefined) return rt;
  warnOnce(rt.onWarning, fallback);
  return { ...rt, executionProvider: 'cpu' };
}
