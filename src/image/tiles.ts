/** Where overlapping tiles of one size start along an axis (shared by tiled VAE decoding and encoding and tiled upscaling). */

/**
 * Evenly spaced starts covering [0, size) with tiles of `tile` overlapping by at least `overlap`;
 * with `multiple`, every start is a multiple of it (size and tile must be multiples too).
 */
export function tileStarts(size: number, tile: number, overlap: number, multiple = 1): number[] {
  if (size <= tile) return [0];
  if (multiple > 1) return tileStarts(size / multiple, tile / multiple, Math.ceil(overlap / multiple)).map((s) => s * multiple);
  const count = Math.ceil((size - overlap) / (tile - overlap));
  return Array.from({ length: count }, (_, i) => Math.round((i * (size - tile)) / (count - 1)));
}
