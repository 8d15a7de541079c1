/**
 * Puts a set of LoRAs onto a model's components and accounts for every module of every file:
 * applied, reported as matching nothing (count and first names, through onWarning), or an error
 * when the file was made for another architecture.
 */
import type { LoraComponent } from './file.js';
import { componentName, resolveLoras, type LoadedLora, type LoraPatches } from './merge.js';
import type { LoraTargets } from './names.js';
import { UserError } from '../errors.js';

/** A component whose weights take LoRAs (the U-Net, a text encoder). */
export interface LoraHost {
  readonly loraComponent: LoraComponent;
  loraTargets(): LoraTargets;
  /** Replaces the component's LoRA deltas; the next run builds (or reads from the cache) the graph for them. */
  setLoraPatches(patches: LoraPatches): void;
}

export interface ApplyLorasOptions {
  /**
   * True for a whole pipeline: modules for a component the model lacks (SDXL's second text encoder
   * on SD 1.x) are an error. False for one component loaded alone: other components' modules are
   * none of its business.
   */
  strict: boolean;
  onWarning?: (message: string) => void;
}

const SHOWN = 5;

export function applyLoras(loras: readonly LoadedLora[], hosts: readonly LoraHost[], o: ApplyLorasOptions): void {
  const present = new Set(hosts.map((h) => h.loraComponent));
  for (const { file } of loras) {
    const absent = file.modules.filter((m) => m.component && !present.has(m.component));
    if (o.strict && absent.length > 0) {
      const c = absent[0]!.component!;
      throw new UserError(
        `LoRA ${file.name}: ${absent.length} ${absent.length === 1 ? 'module' : 'modules'} (${absent[0]!.name}${absent.length > 1 ? ', …' : ''}) for the ${componentName(c)}, which this model does not have: ` +
          `the LoRA was made for another model architecture; use a LoRA trained for this model`,
      );
    }
    const applicable = file.modules.filter((m) => m.component && present.has(m.component));
    if (applicable.length === 0 && (o.strict || absent.length === 0)) {
      throw new UserError(
        `LoRA ${file.name}: none of its ${file.modules.length} modules (${file.modules[0]!.name}, …) names a part of this model ` +
          `(expected lora_unet_… / lora_te_… names): it was made for another kind of model`,
      );
    }
  }
  // Resolve everything before changing any component, so that an error leaves the model as it was.
  const resolved = hosts.map((h) => ({ host: h, r: resolveLoras(loras, h.loraComponent, h.loraTargets()) }));
  for (const { host, r } of resolved) host.setLoraPatches(r.patches);

  const warn = o.onWarning ?? ((m: string) => console.warn(m));
  for (const { file } of loras) {
    const ignored = [
      ...resolved.flatMap(({ r }) => r.unmatched.get(file) ?? []),
      ...file.modules.filter((m) => !m.component).map((m) => m.name),
      ...file.strayTensors,
    ];
    if (ignored.length > 0) {
      const total = file.modules.length + file.strayTensors.length;
      warn(
        `LoRA ${file.name}: ${ignored.length} of ${total} modules match nothing in this model and are ignored: ` +
          `${ignored.slice(0, SHOWN).join(', ')}${ignored.length > SHOWN ? ', …' : ''}`,
      );
    }
    if (!o.strict && file.modules.every((m) => !m.component || !present.has(m.component))) {
      warn(`LoRA ${file.name}: no modules for the ${[...present].map(componentName).join(' or ')}; nothing of it applies here`);
    }
  }
}

/** `Lora hashes` as AUTOMATIC1111 writes it: `name: shorthash, …`, names without ':' and ','. */
export function loraHashes(used: readonly { name: string; hash: string }[]): string {
  return used.map((u) => `${u.name.replace(/[:,]/g, '')}: ${u.hash}`).join(', ');
}
