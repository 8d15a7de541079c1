/** A weights file of either format — safetensors or a PyTorch pickle — recognised by its content. */
import { closeSync, openSync, readSync } from 'node:fs';
import { SafetensorsFile } from './safetensors.js';
import type { TensorFile } from './tensor-file.js';
import { TorchFile } from './torch-file.js';

/** The extensions PyTorch weights files go by. */
export const TORCH_EXTENSIONS = ['.ckpt', '.pt', '.pth', '.bin'];

/** The first bytes of a file; undefined when it cannot be read (the reader then names the error). */
function head(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const b = Buffer.alloc(9);
    return b.subarray(0, readSync(fd, b, 0, 9, 0));
  } finally {
    closeSync(fd);
  }
}

export function openWeightsFile(path: string): TensorFile {
  const h = head(path);
  const torchName = TORCH_EXTENSIONS.some((e) => path.toLowerCase().endsWith(e));
  // safetensors: an 8-byte header length, then the JSON header's '{'. PyTorch: a zip archive, or a pickle.
  const safetensors = h !== undefined && h.length === 9 && h[8] === 0x7b;
  const torch = h ? !safetensors && ((h.length >= 4 && h.readUInt32LE(0) === 0x04034b50) || (h[0] === 0x80 && h[1]! <= 5) || torchName) : torchName;
  return torch ? TorchFile.open(path) : SafetensorsFile.open(path);
}
