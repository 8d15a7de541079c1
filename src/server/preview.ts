/**
 * A cheap preview of SD latents: each pixel's RGB is a fixed linear mix of its 4 latent
 * channels (the approximation A1111 calls "Approx cheap"), one PNG pixel per latent.
 */
import { encodePng } from '../io/png.js';
import type { Tensor } from '../tensor.js';

// Rows: latent channels; columns: R, G, B.
const MIX = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];

/** The first image of a latent batch [B, 4, h, w] as a small PNG, or undefined for other shapes. */
export function latentPreview(latents: Tensor): Uint8Array | undefined {
  const [, c, h, w] = latents.dims as [number, number, number, number];
  if (latents.dims.length !== 4 || c !== 4) return undefined;
  const data = new Uint8Array(h * w * 3);
  for (let p = 0; p < h * w; p++) {
    for (let ch = 0; ch < 3; ch++) {
      let v = 0;
      for (let l = 0; l < 4; l++) v += latents.data[l * h * w + p]! * MIX[l]![ch]!;
      data[p * 3 + ch] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
    }
  }
  return encodePng({ width: w, height: h, data });
}
