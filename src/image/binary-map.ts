/**
 * OpenCV's operations on 8-bit single-channel maps that AUTOMATIC1111's ControlNet uses to
 * resize edge maps: dilate / erode with a 3x3 structuring element (pixels outside the image
 * never win), hit-or-miss, and Otsu's threshold — and lvmin Zhang's edge thinning built on them
 * (sd-webui-controlnet's lvminthin.py: `nake_nms`, `lvmin_thin`).
 */

/** A 3x3 kernel, row-major: for dilate/erode non-zero = in the element; for hit-or-miss 1 = set, −1 = clear, 0 = either. */
export type Kernel3 = readonly number[];

export interface Plane {
  width: number;
  height: number;
  data: Uint8Array;
}

function morph(src: Plane, kernel: Kernel3, pick: (a: number, b: number) => number, start: number): Uint8Array {
  const { width: w, height: h, data } = src;
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = start;
      for (let k = 0; k < 9; k++) {
        if (!kernel[k]) continue;
        const yy = y + Math.floor(k / 3) - 1;
        const xx = x + (k % 3) - 1;
        if (yy >= 0 && yy < h && xx >= 0 && xx < w) v = pick(v, data[yy * w + xx]!);
      }
      out[y * w + x] = v;
    }
  }
  return out;
}

export const BOX3: Kernel3 = [1, 1, 1, 1, 1, 1, 1, 1, 1];

export function dilate(src: Plane, kernel: Kernel3 = BOX3): Uint8Array {
  return morph(src, kernel, Math.max, 0);
}

export function erode(src: Plane, kernel: Kernel3 = BOX3): Uint8Array {
  return morph(src, kernel, Math.min, 255);
}

/** MORPH_HITMISS on a 0/255 map: 255 where every 1 of the kernel meets a set pixel and every −1 a clear one (outside the image counts as both). */
export function hitMiss(src: Plane, kernel: Kernel3): Uint8Array {
  const hit = erode(src, kernel.map((v) => (v === 1 ? 1 : 0)));
  const inverted = { ...src, data: src.data.map((v) => 255 - v) };
  const miss = erode(inverted, kernel.map((v) => (v === -1 ? 1 : 0)));
  return hit.map((v, i) => v & miss[i]!);
}

/** cv2.threshold(src, 0, 255, THRESH_BINARY + THRESH_OTSU): the level that maximises the between-class variance, then > level → 255. */
export function otsu(src: Plane): Uint8Array {
  const hist = new Float64Array(256);
  for (const v of src.data) hist[v]!++;
  const scale = 1 / src.data.length;
  let mu = 0;
  for (let i = 0; i < 256; i++) mu += i * hist[i]!;
  mu *= scale;
  const eps = 1.1920928955078125e-7;
  let mu1 = 0;
  let q1 = 0;
  let maxSigma = 0;
  let level = 0;
  for (let i = 0; i < 256; i++) {
    const p = hist[i]! * scale;
    mu1 *= q1;
    q1 += p;
    const q2 = 1 - q1;
    if (Math.min(q1, q2) < eps || Math.max(q1, q2) > 1 - eps) continue;
    mu1 = (mu1 + i * p) / q1;
    const mu2 = (mu - q1 * mu1) / q2;
    const sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
    if (sigma > maxSigma) {
      maxSigma = sigma;
      level = i;
    }
  }
  return src.data.map((v) => (v > level ? 255 : 0));
}

/** np.rot90(k, 1): counter-clockwise. */
function rot90(k: Kernel3): Kernel3 {
  return Array.from({ length: 9 }, (_, i) => k[(i % 3) * 3 + 2 - Math.floor(i / 3)]!);
}

/** Each kernel and its rotations by 90°, 180°, 270°, in lvminthin.py's order. */
function rotations(raw: readonly Kernel3[]): Kernel3[] {
  const out: Kernel3[] = [];
  let turned = [...raw];
  for (let r = 0; r < 4; r++) {
    out.push(...turned);
    turned = turned.map(rot90);
  }
  return out;
}

const THIN_KERNELS = rotations([
  [-1, -1, -1, 0, 1, 0, 1, 1, 1],
  [0, -1, -1, 1, 1, -1, 0, 1, 0],
]);
const PRUNE_KERNELS = rotations([
  [-1, -1, -1, -1, 1, -1, 0, 0, -1],
  [-1, -1, -1, -1, 1, -1, -1, 0, 0],
]);

/** One sweep: each kernel's hits are cleared before the next kernel looks; true if anything changed. */
function thinOnce(map: Plane, kernels: readonly Kernel3[]): boolean {
  let changed = false;
  for (const k of kernels) {
    const hits = hitMiss(map, k);
    for (let i = 0; i < hits.length; i++) {
      if (hits[i]! > 127) {
        map.data[i] = 0;
        changed = true;
      }
    }
  }
  return changed;
}

/** lvmin_thin: up to 32 thinning sweeps until nothing changes, then one pruning sweep when asked. In place. */
export function thinEdges(map: Plane, prune: boolean): void {
  for (let i = 0; i < 32 && thinOnce(map, THIN_KERNELS); i++);
  if (prune) thinOnce(map, PRUNE_KERNELS);
}

/** nake_nms: a pixel is kept where it is the maximum along at least one of the four lines through it. */
export function lineMaxima(src: Plane): Uint8Array {
  const out = new Uint8Array(src.data.length);
  for (const k of [
    [0, 0, 0, 1, 1, 1, 0, 0, 0],
    [0, 1, 0, 0, 1, 0, 0, 1, 0],
    [1, 0, 0, 0, 1, 0, 0, 0, 1],
    [0, 0, 1, 0, 1, 0, 1, 0, 0],
  ]) {
    const d = dilate(src, k);
    for (let i = 0; i < out.length; i++) if (d[i] === src.data[i]) out[i] = src.data[i]!;
  }
  return out;
}
