/**
 * Lanczos-3 resampling of 8-bit RGB images (separable, as PIL's Image.LANCZOS: the kernel
 * widens with the scale when shrinking, so downscaling averages instead of aliasing).
 */
import type { RgbImage } from '../io/png.js';

const A = 3;

function lanczos(x: number): number {
  if (x === 0) return 1;
  if (Math.abs(x) >= A) return 0;
  const px = Math.PI * x;
  return (A * Math.sin(px) * Math.sin(px / A)) / (px * px);
}

/** For each output index along one axis: the first source index and normalised weights. */
function weights(inSize: number, outSize: number): { start: number; w: Float32Array }[] {
  const scale = inSize / outSize;
  const support = A * Math.max(1, scale);
  const stretch = Math.max(1, scale);
  return Array.from({ length: outSize }, (_, o) => {
    const center = (o + 0.5) * scale;
    const start = Math.max(0, Math.floor(center - support));
    const end = Math.min(inSize, Math.ceil(center + support));
    const w = Float32Array.from({ length: end - start }, (_, k) => lanczos((start + k + 0.5 - center) / stretch));
    const sum = w.reduce((a, b) => a + b, 0);
    return { start, w: w.map((v) => v / sum) };
  });
}

export function resizeLanczos(img: RgbImage, width: number, height: number): RgbImage {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new Error(`resize: size must be positive integers; got ${width}x${height}`);
  }
  const { width: iw, height: ih, data } = img;
  const wx = weights(iw, width);
  const wy = weights(ih, height);
  // Horizontal pass into floats, then vertical pass into bytes.
  const mid = new Float32Array(ih * width * 3);
  for (let y = 0; y < ih; y++) {
    for (let x = 0; x < width; x++) {
      const { start, w } = wx[x]!;
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (let k = 0; k < w.length; k++) v += w[k]! * data[(y * iw + start + k) * 3 + c]!;
        mid[(y * width + x) * 3 + c] = v;
      }
    }
  }
  const out = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) {
    const { start, w } = wy[y]!;
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (let k = 0; k < w.length; k++) v += w[k]! * mid[((start + k) * width + x) * 3 + c]!;
        out[(y * width + x) * 3 + c] = Math.round(Math.min(255, Math.max(0, v)));
      }
    }
  }
  return { width, height, data: out };
}
