/**
 * SDXL's prompt conditioning: both tokenizers and text encoders, their penultimate hidden states
 * concatenated (ViT-L first), the second encoder's projected pooled output, and the size/crop
 * time ids; negative half first for classifier-free guidance. `encode` is diffusers'
 * StableDiffusionXLPipeline ('plain' prompts); `promptEncoders` hands both encoders to the
 * AUTOMATIC1111 prompt code (src/prompt/), which chunks and weights for each of them.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJson } from '../io/model-folder.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import { TIME_IDS, type UNetConfig } from '../models/unet.js';
import { concatChannels } from '../prompt/conditioning.js';
import type { PromptEncoder } from '../prompt/prompt-conditioning.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import { loadTokenizer, type ClipTokenizer } from '../tokenizer/clip.js';

/** What the U-Net gets besides the latents: text tokens, and for SDXL the pooled text and time ids. */
export interface Conditioning {
  encoderHiddenStates: Tensor;
  added?: { textEmbeds: Tensor; timeIds: Tensor };
}

export interface SdxlPromptRequest {
  prompt: string;
  /** undefined = none given: zeros when the model forces zeros for an empty prompt; "" is encoded. */
  negativePrompt: string | undefined;
  /** Images per prompt. */
  batch: number;
  /** Classifier-free guidance: the negative half comes first. */
  guided: boolean;
  /** 1 = the penultimate layer (SDXL's default), 2 = the one before, … */
  clipSkip: number;
  width: number;
  height: number;
}

/**
 * SDXL's micro-conditioning: original size, crop top-left and target size, each height
 * first, as pixels (diffusers' `add_time_ids`).
 */
export function sdxlTimeIds(original: readonly [number, number], cropTopLeft: readonly [number, number], target: readonly [number, number]): number[] {
  return [...original, ...cropTopLeft, ...target];
}

export class SdxlConditioner {
  /**
   * From loaded components (a diffusers folder: `load`; other sources build them and call this).
   * Checks them against the U-Net they condition.
   */
  constructor(
    readonly tokenizers: readonly [ClipTokenizer, ClipTokenizer],
    readonly textEncoders: readonly [ClipTextEncoder, ClipTextEncoder],
    unet: UNetConfig,
    /** No negative prompt → zero negative embeddings (diffusers' `force_zeros_for_empty_prompt`, default true). */
    readonly forceZerosForEmptyPrompt = true,
  ) {
    const [te1, te2] = textEncoders;
    const width = te1.config.hiddenSize + te2.config.hiddenSize;
    if (width !== unet.crossAttentionDim) {
      throw new Error(
        `SDXL text encoders' widths ${te1.config.hiddenSize} + ${te2.config.hiddenSize} = ${width} do not match the U-Net's cross_attention_dim ${unet.crossAttentionDim}; the components come from different models`,
      );
    }
    const pooled = te2.config.projectionDim;
    if (pooled === null) throw new Error('SDXL text_encoder_2 must be a CLIPTextModelWithProjection (its pooled output conditions the U-Net)');
    if (pooled !== unet.textTime?.textEmbedDim) {
      throw new Error(
        `text_encoder_2's projection_dim ${pooled} does not match the U-Net's pooled-text width ${String(unet.textTime?.textEmbedDim)} ` +
          `(projection_class_embeddings_input_dim − ${TIME_IDS} × addition_time_embed_dim); SDXL refiner-style U-Nets (aesthetic score) are not supported`,
      );
    }
  }

  /** Loads tokenizer(_2) and text_encoder(_2) of an SDXL diffusers folder, `force_zeros_for_empty_prompt` from its model_index.json. */
  static async load(dir: string, unet: UNetConfig, opts: RuntimeOptions = {}): Promise<SdxlConditioner> {
    const [tok1, tok2, te1, te2] = await Promise.all([
      loadTokenizer(dir, { onWarning: opts.onWarning }),
      loadTokenizer(dir, { component: 'tokenizer_2', onWarning: opts.onWarning }),
      ClipTextEncoder.load(dir, opts),
      ClipTextEncoder.load(dir, { ...opts, component: 'text_encoder_2' }),
    ]);
    const indexPath = join(dir, 'model_index.json');
    const index = existsSync(indexPath) ? readJson(indexPath, 'model index') : {};
    return new SdxlConditioner([tok1, tok2], [te1, te2], unet, index.force_zeros_for_empty_prompt !== false);
  }

  /** The U-Net's conditioning for one prompt × `batch` images (negative half first when guided). */
  async encode(r: SdxlPromptRequest): Promise<Conditioning> {
    const zeroNegative = r.negativePrompt === undefined && this.forceZerosForEmptyPrompt;
    const texts = [r.prompt, ...(r.guided && !zeroNegative ? [r.negativePrompt ?? ''] : [])];
    const { hidden, pooled } = await this.encodeTexts(texts, r.clipSkip);
    const [, length, width] = hidden.dims as [number, number, number];
    const pooledWidth = pooled.dims[1]!;
    const hiddenSize = length * width;
    // Rows in batch order: negative × batch, then positive × batch (diffusers' num_images_per_prompt).
    const rows = [...(r.guided ? Array<number>(r.batch).fill(zeroNegative ? -1 : 1) : []), ...Array<number>(r.batch).fill(0)];
    const n = rows.length;
    const text = new Float32Array(n * hiddenSize);
    const textEmbeds = new Float32Array(n * pooledWidth);
    rows.forEach((src, i) => {
      if (src < 0) return;
      text.set(hidden.data.subarray(src * hiddenSize, (src + 1) * hiddenSize), i * hiddenSize);
      textEmbeds.set(pooled.data.subarray(src * pooledWidth, (src + 1) * pooledWidth), i * pooledWidth);
    });
    return {
      encoderHiddenStates: { data: text, dims: [n, length, width] },
      added: { textEmbeds: { data: textEmbeds, dims: [n, pooledWidth] }, timeIds: this.timeIds(n, r.width, r.height) },
    };
  }

  /** The time ids of `rows` batch rows for an image of this size (no crop): [rows, 6]. */
  timeIds(rows: number, width: number, height: number): Tensor {
    const ids = sdxlTimeIds([height, width], [0, 0], [height, width]);
    return { data: Float32Array.from({ length: rows * TIME_IDS }, (_, i) => ids[i % TIME_IDS]!), dims: [rows, TIME_IDS] };
  }

  /**
   * Both encoders for the A1111 prompt code, ViT-L first, each with its own tokenizer: A1111's
   * FrozenCLIPEmbedderForSDXLWithCustomWords pads with the end token and its
   * FrozenOpenCLIPEmbedder2WithCustomWords with id 0, which is what the two tokenizers' pad ids
   * already say. Only the second gives a pooled vector.
   */
  promptEncoders(clipSkip: number): PromptEncoder[] {
    return this.tokenizers.map((tokenizer, i) => ({
      tokenizer,
      encode: async (ids) => {
        const out = await this.textEncoders[i]!.forwardHiddenStates(ids, { clipSkip });
        return { hidden: out.hiddenStates, ...(out.textEmbeds ? { pooled: out.textEmbeds } : {}) };
      },
    }));
  }

  /** Both encoders' hidden states [N, 77, D1 + D2] (ViT-L first) and the pooled output [N, P]. */
  private async encodeTexts(texts: string[], clipSkip: number): Promise<{ hidden: Tensor; pooled: Tensor }> {
    const outs = await Promise.all(
      this.tokenizers.map((tok, i) => {
        const length = tok.modelMaxLength;
        const ids = Int32Array.from(texts.flatMap((t) => tok.encode(t)));
        return this.textEncoders[i]!.forwardHiddenStates({ data: ids, dims: [texts.length, length] }, { clipSkip });
      }),
    );
    return { hidden: concatChannels(outs.map((o) => o.hiddenStates)), pooled: outs[1]!.textEmbeds! };
  }

  async dispose(): Promise<void> {
    await Promise.all(this.textEncoders.map((te) => te.dispose()));
  }
}
