/**
 * Image-to-image as diffusers' StableDiffusionImg2ImgPipeline (0.26): the picture in [-1, 1],
 * the strength cutting the schedule, a posterior sample of the VAE encoder (a TAESD's output as it
 * is), then the scheduler's add_noise — with the random draws in diffusers' order from the one seeded generator.
 */
import { resample } from '../image/resample.js';
import type { RgbImage } from '../io/png.js';
import type { TinyVAE } from '../models/taesd.js';
import { VAE } from '../models/vae.js';
import type { Scheduler } from '../scheduler/index.js';
import type { Tensor } from '../tensor.js';
import type { LatentDistribution } from './vae-tiling.js';

const f = Math.fround;

/** `VaeImageProcessor.preprocess`: 8-bit RGB images of one size → [N, 3, H, W] float32 in [-1, 1]. */
export function imagesToTensor(images: readonly RgbImage[]): Tensor {
  const { width, height } = images[0]!;
  const n = width * height;
  const data = new Float32Array(images.length * 3 * n);
  images.forEach((img, b) => {
    for (let p = 0; p < n; p++) {
      for (let c = 0; c < 3; c++) data[(b * 3 + c) * n + p] = f(f(2 * f(img.data[p * 3 + c]! / 255)) - 1);
    }
  });
  return { data, dims: [images.length, 3, height, width] };
}

/** An image at the given size: as it is, or resized with Lanczos (Pillow's, as diffusers and A1111 do). */
export function fitImage(img: RgbImage, width: number, height: number): RgbImage {
  if (img.width === width && img.height === height) return img;
  const { data } = resample({ ...img, channels: 3 }, width, height, 'lanczos');
  return { width, height, data };
}

/** Throws unless `img` is a well-formed RgbImage; `what` names it in the message. */
export function checkRgbImage(img: RgbImage, what: string): void {
  const ok =
    img && Number.isInteger(img.width) && Number.isInteger(img.height) && img.width > 0 && img.height > 0 && img.data instanceof Uint8Array && img.data.length === img.width * img.height * 3;
  if (!ok) throw new Error(`${what} must be { width, height, data: Uint8Array of width·height·3 RGB bytes }`);
}

/**
 * The part of the schedule img2img runs: `timesteps[t_start · order:]` with
 * `t_start = steps − min(⌊steps · strength⌋, steps)`. PNDM's schedule has one timestep more than
 * `steps`, so it runs one step more. LCM and TCD take strength into their own schedule instead
 * (diffusers' LatentConsistencyModelImg2ImgPipeline: set_timesteps(steps, strength=…)), and all
 * `steps` run.
 */
export function img2imgTimesteps(scheduler: Scheduler, steps: number, strength: number): number[] {
  if (scheduler.setImg2ImgTimesteps) {
    scheduler.setImg2ImgTimesteps(steps, strength);
    return [...scheduler.timesteps];
  }
  const init = Math.min(Math.floor(steps * strength), steps);
  const start = Math.max(steps - init, 0);
  const ts = scheduler.timesteps.slice(start * scheduler.order);
  if (ts.length === 0 || init === 0) {
    throw new Error(`strength ${strength} with ${steps} steps runs no denoising step (⌊steps · strength⌋ = 0); raise the strength or the steps`);
  }
  return ts;
}

export interface EncodedImage {
  mean: Tensor;
  std: Tensor;
  /** The standard normal draw of the posterior sample. */
  eps: Float32Array;
  /** scaling_factor · (mean + std · eps), repeated to the batch. */
  latents: Tensor;
}

/**
 * `vae.encode(image).latent_dist.sample(generator) · scaling_factor`: one draw of the image's
 * latent shape from `randn`, std = exp(½ · clamp(logvar, −30, 20)). One image is repeated to the batch
 * (diffusers repeats the init latents for num_images_per_prompt); a batch of images is encoded as it is.
 * `encode`: the encoder (default: the VAE's, whole; the pipeline tiles large images).
 */
export async function encodeImage(
  vae: VAE,
  image: Tensor,
  randn: (dims: readonly number[]) => Float32Array,
  batch: number,
  encode: (image: Tensor) => Promise<LatentDistribution> = (t) => vae.encodeDistribution(t),
): Promise<EncodedImage> {
  const { mean, logvar } = await encode(image);
  const std = logvar.data.map((v) => f(Math.exp(f(0.5 * Math.min(20, Math.max(-30, v))))));
  const eps = randn(mean.dims);
  const sf = f(vae.config.scalingFactor);
  const one = mean.data.map((m, i) => f(sf * f(m + f(std[i]! * eps[i]!))));
  return { mean, std: { data: std, dims: mean.dims }, eps, latents: repeatToBatch({ data: one, dims: mean.dims }, batch) };
}

/** Latents of the images (one, or a batch) as the batch: one image repeated, as diffusers repeats init latents. */
function repeatToBatch(t: Tensor, batch: number): Tensor {
  const data = new Float32Array(t.data.length * (batch / t.dims[0]!));
  for (let at = 0; at < data.length; at += t.data.length) data.set(t.data, at);
  return { data, dims: [batch, ...t.dims.slice(1)] };
}

/**
 * The init latents of `image` as diffusers' pipelines take them, `retrieve_latents(vae.encode(image))
 * · scaling_factor`: AutoencoderKL's posterior sample (encodeImage, one draw from `randn`), or
 * AutoencoderTiny's `latents` output as it is, which draws nothing from the generator.
 * `encode`: the VAE's encoder (default: whole; the pipeline tiles large images).
 */
export async function encodeInitLatents(
  vae: VAE | TinyVAE,
  image: Tensor,
  randn: (dims: readonly number[]) => Float32Array,
  batch: number,
  encode?: (image: Tensor) => Promise<LatentDistribution>,
): Promise<Tensor> {
  if (vae instanceof VAE) return (await encodeImage(vae, image, randn, batch, encode)).latents;
  const latents = await vae.encode(image);
  const sf = f(vae.config.scalingFactor);
  return repeatToBatch({ data: latents.data.map((v) => f(sf * v)), dims: latents.dims }, batch);
}

/** The starting latents of an img2img run: fresh noise from `randn`, added at the first timestep. */
export function noiseLatents(scheduler: Scheduler, init: Tensor, timesteps: readonly number[], randn: (dims: readonly number[]) => Float32Array): { noise: Tensor; latents: Tensor } {
  const noise = { data: randn(init.dims), dims: init.dims };
  return { noise, latents: scheduler.addNoise(init, noise, timesteps[0]!) };
}
