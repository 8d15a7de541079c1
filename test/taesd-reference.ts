/**
 * diffusers' AutoencoderTiny forward pass in plain float64 loops, transcribed for the tests from
 * diffusers 0.26 (models/autoencoders/vae.py EncoderTiny / DecoderTiny, models/unets/
 * unet_2d_blocks.py AutoencoderTinyBlock), independent of the graph builder: it reads the
 * config.json and the weights by their diffusers keys itself. One image at a time.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/io/safetensors.js';

/** A [C, H, W] feature map. */
interface Map3 {
  c: number;
  h: number;
  w: number;
  d: Float64Array;
}

type Weights = (key: string) => Float32Array;

/** nn.Conv2d(k=3, padding=1, stride) on one image, bias optional. */
function conv3(x: Map3, weights: Weights, key: string, cout: number, stride: number, bias: boolean): Map3 {
  const w = weights(`${key}.weight`);
  const b = bias ? weights(`${key}.bias`) : undefined;
  if (w.length !== cout * x.c * 9) throw new Error(`${key}: ${w.length} weights for ${cout}x${x.c}x3x3`);
  const h = Math.floor((x.h + 2 - 3) / stride) + 1;
  const wd = Math.floor((x.w + 2 - 3) / stride) + 1;
  const d = new Float64Array(cout * h * wd);
  for (let o = 0; o < cout; o++) {
    for (let y = 0; y < h; y++) {
      for (let xo = 0; xo < wd; xo++) {
        let acc = b ? b[o]! : 0;
        for (let i = 0; i < x.c; i++) {
          for (let ky = 0; ky < 3; ky++) {
            const sy = y * stride + ky - 1;
            if (sy < 0 || sy >= x.h) continue;
            for (let kx = 0; kx < 3; kx++) {
              const sx = xo * stride + kx - 1;
              if (sx < 0 || sx >= x.w) continue;
              acc += w[((o * x.c + i) * 3 + ky) * 3 + kx]! * x.d[(i * x.h + sy) * x.w + sx]!;
            }
          }
        }
        d[(o * h + y) * wd + xo] = acc;
      }
    }
  }
  return { c: cout, h, w: wd, d };
}

const map = (x: Map3, f: (v: number) => number): Map3 => ({ ...x, d: x.d.map(f) });

/** diffusers' get_activation for the names AutoencoderTiny configs use. */
function act(name: string): (v: number) => number {
  if (name === 'relu') return (v) => Math.max(0, v);
  if (name === 'silu' || name === 'swish') return (v) => v / (1 + Math.exp(-v));
  throw new Error(`reference: activation ${name} not transcribed`);
}

/** nn.Upsample(scale_factor=2, mode='nearest'). */
function upsample2(x: Map3): Map3 {
  const d = new Float64Array(x.c * x.h * 2 * x.w * 2);
  for (let c = 0; c < x.c; c++) for (let y = 0; y < 2 * x.h; y++) for (let xo = 0; xo < 2 * x.w; xo++) d[(c * 2 * x.h + y) * 2 * x.w + xo] = x.d[(c * x.h + (y >> 1)) * x.w + (xo >> 1)]!;
  return { c: x.c, h: 2 * x.h, w: 2 * x.w, d };
}

/** AutoencoderTinyBlock(ch, ch): fuse(conv(x) + skip(x)), conv = Conv, act, Conv, act, Conv; skip = Identity; fuse = ReLU. */
function block(x: Map3, weights: Weights, key: string, ch: number, a: (v: number) => number): Map3 {
  let h = map(conv3(x, weights, `${key}.conv.0`, ch, 1, true), a);
  h = map(conv3(h, weights, `${key}.conv.2`, ch, 1, true), a);
  h = conv3(h, weights, `${key}.conv.4`, ch, 1, true);
  return { ...h, d: h.d.map((v, i) => Math.max(0, v + x.d[i]!)) };
}

export class TinyVAEReference {
  private readonly cfg: Record<string, unknown>;
  private readonly weights: Weights;

  /** `dir`: a diffusers AutoencoderTiny folder. */
  constructor(dir: string) {
    this.cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const file = SafetensorsFile.open(join(dir, 'diffusion_pytorch_model.safetensors'));
    this.weights = (key) => file.readFloat32(key);
  }

  private get<T>(key: string, fallback: T): T {
    return (this.cfg[key] as T | undefined) ?? fallback;
  }

  /** DecoderTiny.forward: tanh(x / 3) · 3, the layers, then · 2 − 1. `latents`: [C, h, w]. */
  decode(latents: Float32Array, c: number, h: number, w: number): Map3 {
    const boc = this.get<number[]>('decoder_block_out_channels', [64, 64, 64, 64]);
    const blocks = this.get<number[]>('num_decoder_blocks', [3, 3, 3, 1]);
    const out = this.get<number>('out_channels', 3);
    const a = act(this.get<string>('act_fn', 'relu'));
    let i = 0;
    const key = (): string => `decoder.layers.${i++}`;
    let x: Map3 = { c, h, w, d: Float64Array.from(latents, (v) => Math.tanh(v / 3) * 3) };
    x = map(conv3(x, this.weights, key(), boc[0]!, 1, true), a);
    i++; // the activation's index
    blocks.forEach((n, level) => {
      const final = level === blocks.length - 1;
      for (let b = 0; b < n; b++) x = block(x, this.weights, key(), boc[level]!, a);
      if (!final) {
        x = upsample2(x);
        i++;
      }
      x = conv3(x, this.weights, key(), final ? out : boc[level]!, 1, final);
    });
    return map(x, (v) => v * 2 - 1);
  }

  /** EncoderTiny.forward: the layers on (x + 1) / 2. `image`: [3, H, W] in [-1, 1]. */
  encode(image: Float32Array, c: number, h: number, w: number): Map3 {
    const boc = this.get<number[]>('encoder_block_out_channels', [64, 64, 64, 64]);
    const blocks = this.get<number[]>('num_encoder_blocks', [1, 3, 3, 3]);
    const latent = this.get<number>('latent_channels', 4);
    const a = act(this.get<string>('act_fn', 'relu'));
    let i = 0;
    const key = (): string => `encoder.layers.${i++}`;
    let x: Map3 = { c, h, w, d: Float64Array.from(image, (v) => (v + 1) / 2) };
    blocks.forEach((n, level) => {
      x = level === 0 ? conv3(x, this.weights, key(), boc[0]!, 1, true) : conv3(x, this.weights, key(), boc[level]!, 2, false);
      for (let b = 0; b < n; b++) x = block(x, this.weights, key(), boc[level]!, a);
    });
    return conv3(x, this.weights, key(), latent, 1, true);
  }
}
