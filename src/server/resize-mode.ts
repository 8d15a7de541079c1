/** A1111's img2img resize modes, applied to init images and masks before a job runs (or, after its upscale, by the runner). */
import type { RgbImage } from '../io/png.js';
import { fitImage as resizeLanczos } from '../pipeline/img2img.js';

/** A1111's resize modes: 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent (as 0 here). */
export function fitImage(img: RgbImage, width: number, height: number, mode: number): RgbImage {
  if (img.width === width && img.height === height) return img;
  if (mode !== 1 && mode !== 2) return resizeLanczos(img, width, height);
  const ratio = mode === 1 ? Math.max(width / img.width, height / img.height) : Math.min(width / img.width, height / img.height);
  const sw = Math.max(1, Math.round(img.width * ratio));
  const sh = Math.max(1, Math.round(img.height * ratio));
  const scaled = resizeLanczos(img, sw, sh);
  // Crop (mode 1) or pad with the nearest edge pixel (mode 2) around the centre.
  const ox = Math.floor((sw - width) / 2);
  const oy = Math.floor((sh - height) / 2);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(sh - 1, Math.max(0, y + oy));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(sw - 1, Math.max(0, x + ox));
      data.set(scaled.data.subarray((sy * sw + sx) * 3, (sy * sw + sx) * 3 + 3), (y * width + x) * 3);
    }
  }
  return { width, height, data };
}
