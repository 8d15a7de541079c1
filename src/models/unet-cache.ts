/**
 * DeepCache (Ma et al., "DeepCache: Accelerating Diffusion Models for Free") in U-Net terms:
 * where the U-Net is cut. The cache point names one skip branch as the authors' diffusers
 * helper (DeepCacheSDHelper) does, by `cache_block_id` (resolution level, 0 = the latent's own
 * grid) and `cache_layer_id` (0 … layers_per_block). On a full step the whole U-Net runs and the
 * hidden state entering up_blocks[n−1−block].resnets[layers_per_block−layer] (before its skip
 * concat) is kept; on a cached step only the shallow part runs: conv_in, the down blocks before
 * `block`, the first `layer` layers of down block `block` (their outputs are the skips the rest
 * consumes), then that up block from the kept feature onwards and every up block after it. This
 * is exactly the set of modules the helper does not replace by their cached outputs.
 */
import type { UNetConfig, UNetEncoderConfig } from './unet.js';
import { UserError } from '../errors.js';

/** The helper's cache_block_id / cache_layer_id. */
export interface CachePoint {
  block: number;
  layer: number;
}

/** Which U-Net graph of a DeepCache pass. */
export interface CacheGraph {
  point: CachePoint;
  /** 'full': the whole U-Net, with the feature at the cache point as a second output; 'shallow': only the layers above it, the feature as an input. */
  graph: 'full' | 'shallow';
}

/** Name of the cached feature: an output of the full graph, an input of the shallow one. */
export const DEEP_FEATURE = 'deep_feature';

/** Throws, naming the valid range, unless `p` is a cache point of this U-Net. */
export function checkCachePoint(cfg: UNetEncoderConfig, p: CachePoint): void {
  const blocks = cfg.blockOutChannels.length;
  const layers = cfg.layersPerBlock;
  if (!Number.isInteger(p.block) || p.block < 0 || p.block >= blocks) {
    throw new UserError(`DeepCache block ${p.block} is not a block of this U-Net: use 0 … ${blocks - 1} (0 = the latent's own resolution, the cheapest shallow part)`);
  }
  if (!Number.isInteger(p.layer) || p.layer < 0 || p.layer > layers) {
    throw new UserError(`DeepCache layer ${p.layer} is not a layer of this U-Net's blocks: use 0 … ${layers} (layers_per_block ${layers}; 0 = the shallowest branch)`);
  }
}

/**
 * The cache point of A1111's DeepCache extension's "resnet level": the LDM input block after
 * conv_in at which the shallow part stops, i.e. level = block·(layers_per_block + 1) + layer (the
 * helper's cache_branch_id for SD's 2 layers per block). A level past the U-Net's is an error.
 */
export function cachePointOfLevel(cfg: UNetConfig, level: number): CachePoint {
  const per = cfg.layersPerBlock + 1;
  const levels = cfg.blockOutChannels.length * per;
  if (!Number.isInteger(level) || level < 0 || level >= levels) {
    throw new UserError(`DeepCache resnet level ${level} is not a level of this U-Net: use 0 … ${levels - 1}`);
  }
  return { block: Math.floor(level / per), layer: level % per };
}

/** How many skip connections the shallow part has (conv_in's, then each down layer above the cache point): the ControlNet residuals it takes. */
export function shallowSkipCount(cfg: UNetEncoderConfig, p: CachePoint): number {
  return 1 + p.block * (cfg.layersPerBlock + 1) + p.layer;
}

/** Whether layer `layer` of down block `block` (layers_per_block = its downsampler) is in the shallow part. */
export function inShallowDown(p: CachePoint, block: number, layer: number): boolean {
  return block < p.block || (block === p.block && layer < p.layer);
}

/** Where the cached feature enters the up path: diffusers' up block and resnet index. */
export function cacheEntry(cfg: UNetConfig, p: CachePoint): { upBlock: number; resnet: number } {
  return { upBlock: cfg.blockOutChannels.length - 1 - p.block, resnet: cfg.layersPerBlock - p.layer };
}

/** Channels of the hidden state entering up block `upBlock`'s resnet `resnet` (the previous up block's output at resnet 0, the mid block's before the first). */
export function entryChannels(cfg: UNetConfig, at: { upBlock: number; resnet: number }): number {
  const reversed = [...cfg.blockOutChannels].reverse();
  if (at.resnet > 0) return reversed[at.upBlock]!;
  return at.upBlock === 0 ? reversed[0]! : reversed[at.upBlock - 1]!;
}
