/**
 * Live previews of a running generation, by two of AUTOMATIC1111's methods (its
 * `show_progress_type`): "Approx cheap", each pixel a fixed linear mix of the 4 latent channels
 * (one PNG pixel per latent), and "TAESD", the tiny decoder (full size). Both show the first
 * image of the batch.
 */
import { encodePng } from '../io/png.js';
import type { TinyVAE } from '../models/taesd.js';
import type { Tensor } from '../tensor.js';
import { toRgb } from './stable-diffusion.js';

export const PREVIEW_METHODS = ['cheap', 'taesd'] as const;
export type PreviewMethod = (typeof PREVIEW_METHODS)[number];

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

/**
 * Turns each step's latents into a preview PNG for `onImage`. The cheap approximation is made at
 * once; TAESD decodes run one at a time beside the generation, and latents that arrive meanwhile
 * wait, only the newest of them decoded next. A decoder that fails is reported to `onError`
 * once and the cheap approximation takes over.
 */
export class LivePreview {
  private running?: Promise<void>;
  private pending?: Tensor;

  constructor(
    private readonly onImage: (png: Uint8Array) => void,
    /** The TAESD to decode with; none: the cheap approximation. */
    private decoder?: TinyVAE,
    private readonly onError: (e: Error) => void = () => {},
  ) {}

  update(latents: Tensor): void {
    if (!this.decoder) {
      const png = latentPreview(latents);
      if (png) this.onImage(png);
      return;
    }
    const [, c, h, w] = latents.dims as [number, number, number, number];
    this.pending = { data: latents.data.slice(0, c * h * w), dims: [1, c, h, w] };
    this.running ??= this.drain(this.decoder);
  }

  private async drain(decoder: TinyVAE): Promise<void> {
    for (let z = this.pending; z; z = this.pending) {
      this.pending = undefined;
      try {
        const image = await decoder.decode({ data: z.data.map((v) => v / decoder.config.scalingFactor), dims: z.dims });
        this.onImage(encodePng(toRgb(image)[0]!));
      } catch (e) {
        this.decoder = undefined;
        this.onError(e as Error);
        this.update(this.pending ?? z);
        break;
      }
    }
    this.running = undefined;
  }

  /** Resolves once no decode is running: before its decoder is disposed, or to have the last preview. */
  async settle(): Promise<void> {
    while (this.running) await this.running;
  }
}
