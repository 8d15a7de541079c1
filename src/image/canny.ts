/**
 * OpenCV's `cv2.Canny(image, low, high)` (aperture 3, L1 gradient: its defaults, what
 * AUTOMATIC1111's ControlNet canny preprocessor calls on the RGB picture, no blur first):
 * 3x3 Sobel derivatives with replicated borders; on a colour image, each pixel takes the
 * derivatives of the channel with the largest |dx| + |dy|; non-maximum suppression along the
 * gradient direction quantised with OpenCV's fixed-point tan(22.5°) test (zero magnitude
 * outside the image); then hysteresis: a candidate above `low` is an edge when it is
 * 8-connected, through candidates, to one above `high`. Thresholds are floored to integers
 * and swapped if given the wrong way round, as OpenCV does.
 */
import type { Pixels } from './resample.js';

const SHIFT = 15;
/** round(tan(22.5°) · 2^15) */
const TG22 = Math.round(Math.tan(Math.PI / 8) * (1 << SHIFT));

/** Edge map (255 = edge, 0 = none) of an 8-bit image with 1 or 3 interleaved channels. */
export function canny(src: Pixels, lowThreshold: number, highThreshold: number): Uint8Array {
  const { width: w, height: h, channels: cn, data } = src;
  if (cn !== 1 && cn !== 3) throw new Error(`canny: expected a grey or RGB image; got ${cn} channels`);
  if (!Number.isFinite(lowThreshold) || !Number.isFinite(highThreshold)) throw new Error(`canny: thresholds must be numbers; got ${lowThreshold}, ${highThreshold}`);
  let low = Math.floor(lowThreshold);
  let high = Math.floor(highThreshold);
  if (low > high) [low, high] = [high, low];

  const n = w * h;
  const dx = new Int32Array(n);
  const dy = new Int32Array(n);
  const mag = new Int32Array(n);
  const at = (x: number, y: number, c: number): number => data[(Math.min(h - 1, Math.max(0, y)) * w + Math.min(w - 1, Math.max(0, x))) * cn + c]!;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let best = -1;
      for (let c = 0; c < cn; c++) {
        const gx = at(x + 1, y - 1, c) - at(x - 1, y - 1, c) + 2 * (at(x + 1, y, c) - at(x - 1, y, c)) + at(x + 1, y + 1, c) - at(x - 1, y + 1, c);
        const gy = at(x - 1, y + 1, c) - at(x - 1, y - 1, c) + 2 * (at(x, y + 1, c) - at(x, y - 1, c)) + at(x + 1, y + 1, c) - at(x + 1, y - 1, c);
        const m = Math.abs(gx) + Math.abs(gy);
        // The first channel with the largest magnitude wins (OpenCV compares with >).
        if (m > best) {
          best = m;
          dx[y * w + x] = gx;
          dy[y * w + x] = gy;
        }
      }
      mag[y * w + x] = best;
    }
  }

  const magAt = (x: number, y: number): number => (x < 0 || y < 0 || x >= w || y >= h ? 0 : mag[y * w + x]!);
  // 0: not an edge; 1: a candidate (local maximum above low); 2: an edge.
  const map = new Uint8Array(n);
  const stack: number[] = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const m = mag[i]!;
      if (m <= low) continue;
      const gx = dx[i]!;
      const gy = dy[i]!;
      const xs = Math.abs(gx);
      const ys = Math.abs(gy) * (1 << SHIFT);
      const tg22x = xs * TG22;
      let max: boolean;
      if (ys < tg22x) {
        max = m > magAt(x - 1, y) && m >= magAt(x + 1, y);
      } else {
        const tg67x = tg22x + xs * (1 << (SHIFT + 1));
        if (ys > tg67x) {
          max = m > magAt(x, y - 1) && m >= magAt(x, y + 1);
        } else {
          const s = (gx < 0) !== (gy < 0) ? -1 : 1;
          max = m > magAt(x - s, y - 1) && m > magAt(x + s, y + 1);
        }
      }
      if (!max) continue;
      map[i] = 1;
      if (m > high) {
        map[i] = 2;
        stack.push(i);
      }
    }
  }
  while (stack.length > 0) {
    const i = stack.pop()!;
    const x = i % w;
    const y = (i - x) / w;
    for (let yy = Math.max(0, y - 1); yy <= Math.min(h - 1, y + 1); yy++) {
      for (let xx = Math.max(0, x - 1); xx <= Math.min(w - 1, x + 1); xx++) {
        const j = yy * w + xx;
        if (map[j] === 1) {
          map[j] = 2;
          stack.push(j);
        }
      }
    }
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = map[i] === 2 ? 255 : 0;
  return out;
}
