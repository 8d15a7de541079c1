/**
 * Component configs of the real SD 1.5, SD 2.1 and SDXL base 1.0 checkpoints (as their
 * diffusers folders carry them), and tiny ones for tests: `random-model` writes these with
 * random weights.
 */
export const ARCHITECTURES = ['tiny', 'tiny-sd2', 'tiny-lcm', 'sd15', 'sd21', 'sdxl', 'sdxl-tiny'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

export interface ArchitectureConfigs {
  unet: Record<string, unknown>;
  vae: Record<string, unknown>;
  textEncoder: Record<string, unknown>;
  scheduler: Record<string, unknown>;
  schedulerClass: string;
  /** tokenizer pad token: SD 1.x pads with the end token, SD 2.x with "!". */
  padToken: string;
  /** SDXL: the second text encoder (CLIPTextModelWithProjection) and its tokenizer's pad token. */
  second?: { textEncoder: Record<string, unknown>; padToken: string };
  /** Weight dtype on disk unless asked otherwise: fp16 for the real sizes, fp32 for the tiny test ones. */
  dtype: 'fp32' | 'fp16';
  /** model_index.json's `_class_name`; default StableDiffusionPipeline (StableDiffusionXLPipeline with `second`). */
  pipelineClass?: string;
}

const betas = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000 };

const SD15: ArchitectureConfigs = {
  unet: {
    _class_name: 'UNet2DConditionModel',
    act_fn: 'silu',
    attention_head_dim: 8,
    block_out_channels: [320, 640, 1280, 1280],
    center_input_sample: false,
    cross_attention_dim: 768,
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    downsample_padding: 1,
    flip_sin_to_cos: true,
    freq_shift: 0,
    in_channels: 4,
    layers_per_block: 2,
    mid_block_scale_factor: 1,
    norm_eps: 1e-5,
    norm_num_groups: 32,
    out_channels: 4,
    sample_size: 64,
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  },
  vae: {
    _class_name: 'AutoencoderKL',
    act_fn: 'silu',
    block_out_channels: [128, 256, 512, 512],
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    in_channels: 3,
    latent_channels: 4,
    layers_per_block: 2,
    norm_num_groups: 32,
    out_channels: 3,
    sample_size: 512,
    scaling_factor: 0.18215,
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  },
  textEncoder: {
    architectures: ['CLIPTextModel'],
    model_type: 'clip_text_model',
    hidden_act: 'quick_gelu',
    hidden_size: 768,
    intermediate_size: 3072,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    num_attention_heads: 12,
    num_hidden_layers: 12,
    projection_dim: 768,
    vocab_size: 49408,
  },
  schedulerClass: 'PNDMScheduler',
  scheduler: {
    _class_name: 'PNDMScheduler',
    ...betas,
    clip_sample: false,
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
  },
  padToken: '<|endoftext|>',
  dtype: 'fp16',
};

const SD21: ArchitectureConfigs = {
  unet: {
    ...SD15.unet,
    attention_head_dim: [5, 10, 20, 20],
    cross_attention_dim: 1024,
    use_linear_projection: true,
    upcast_attention: true,
    sample_size: 96,
  },
  vae: { ...SD15.vae, sample_size: 768 },
  textEncoder: {
    ...SD15.textEncoder,
    hidden_act: 'gelu',
    hidden_size: 1024,
    intermediate_size: 4096,
    num_attention_heads: 16,
    num_hidden_layers: 23,
    projection_dim: 512,
  },
  schedulerClass: 'DDIMScheduler',
  scheduler: {
    _class_name: 'DDIMScheduler',
    ...betas,
    clip_sample: false,
    set_alpha_to_one: false,
    steps_offset: 1,
    prediction_type: 'v_prediction',
  },
  padToken: '!',
  dtype: 'fp16',
};

/** Small enough to build and run in well under a second: for tests. */
const TINY: ArchitectureConfigs = {
  unet: {
    ...SD15.unet,
    attention_head_dim: 4,
    block_out_channels: [32, 64],
    cross_attention_dim: 32,
    down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
    layers_per_block: 1,
    norm_num_groups: 8,
    sample_size: 16,
  },
  vae: {
    ...SD15.vae,
    block_out_channels: [16, 32],
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
    layers_per_block: 1,
    norm_num_groups: 8,
    sample_size: 32,
  },
  textEncoder: { ...SD15.textEncoder, hidden_size: 32, intermediate_size: 64, num_attention_heads: 4, num_hidden_layers: 2, projection_dim: 32 },
  schedulerClass: 'PNDMScheduler',
  scheduler: SD15.scheduler,
  padToken: '<|endoftext|>',
  dtype: 'fp32',
};

/** stabilityai/stable-diffusion-xl-base-1.0 */
const SDXL: ArchitectureConfigs = {
  unet: {
    ...SD15.unet,
    addition_embed_type: 'text_time',
    addition_embed_type_num_heads: 64,
    addition_time_embed_dim: 256,
    attention_head_dim: [5, 10, 20],
    block_out_channels: [320, 640, 1280],
    cross_attention_dim: 2048,
    down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
    projection_class_embeddings_input_dim: 2816,
    sample_size: 128,
    transformer_layers_per_block: [1, 2, 10],
    up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
    use_linear_projection: true,
  },
  vae: { ...SD15.vae, force_upcast: true, sample_size: 1024, scaling_factor: 0.13025 },
  textEncoder: SD15.textEncoder,
  second: {
    textEncoder: {
      ...SD15.textEncoder,
      architectures: ['CLIPTextModelWithProjection'],
      hidden_act: 'gelu',
      hidden_size: 1280,
      intermediate_size: 5120,
      num_attention_heads: 20,
      num_hidden_layers: 32,
      projection_dim: 1280,
    },
    padToken: '!',
  },
  schedulerClass: 'EulerDiscreteScheduler',
  scheduler: {
    _class_name: 'EulerDiscreteScheduler',
    ...betas,
    clip_sample: false,
    interpolation_type: 'linear',
    prediction_type: 'epsilon',
    sample_max_value: 1.0,
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    timestep_spacing: 'leading',
    trained_betas: null,
    use_karras_sigmas: false,
  },
  padToken: '<|endoftext|>',
  dtype: 'fp16',
};

/** SDXL's shape (no attention at the top level, text_time, two encoders) at test size. */
const SDXL_TINY: ArchitectureConfigs = {
  ...SDXL,
  unet: {
    ...SDXL.unet,
    addition_time_embed_dim: 8,
    attention_head_dim: [1, 1, 1],
    block_out_channels: [32, 64, 64],
    cross_attention_dim: 24,
    layers_per_block: 1,
    projection_class_embeddings_input_dim: 12 + 6 * 8,
    sample_size: 16,
    transformer_layers_per_block: [1, 1, 2],
  },
  vae: { ...TINY.vae, force_upcast: true, scaling_factor: 0.13025 },
  textEncoder: { ...TINY.textEncoder, hidden_size: 8, intermediate_size: 32, num_attention_heads: 2, num_hidden_layers: 3, projection_dim: 8 },
  second: {
    textEncoder: { ...SDXL.second!.textEncoder, hidden_size: 16, intermediate_size: 64, num_attention_heads: 2, num_hidden_layers: 3, projection_dim: 12 },
    padToken: '!',
  },
  dtype: 'fp32',
};

/** A tiny SD 2.x (OpenCLIP text tower, linear projections, v-prediction) that the LDM single-file layout can hold: 32 GroupNorm groups. */
const TINY_SD2: ArchitectureConfigs = {
  unet: { ...TINY.unet, attention_head_dim: [2, 2], block_out_channels: [32, 32], use_linear_projection: true, norm_num_groups: 32 },
  vae: { ...TINY.vae, block_out_channels: [32, 32], norm_num_groups: 32 },
  textEncoder: { ...SD21.textEncoder, hidden_size: 32, intermediate_size: 64, num_attention_heads: 1, num_hidden_layers: 2, projection_dim: 32 },
  schedulerClass: 'DDIMScheduler',
  scheduler: SD21.scheduler,
  padToken: '!',
  dtype: 'fp32',
};

/**
 * A tiny latent consistency model in the layout of SimianLuo/LCM_Dreamshaper_v7: a
 * guidance-distilled U-Net (time_cond_proj_dim 256) and that folder's LCMScheduler config.
 */
const TINY_LCM: ArchitectureConfigs = {
  ...TINY,
  unet: { ...TINY.unet, time_cond_proj_dim: 256 },
  schedulerClass: 'LCMScheduler',
  scheduler: {
    _class_name: 'LCMScheduler',
    ...betas,
    clip_sample: false,
    original_inference_steps: 50,
    prediction_type: 'epsilon',
    set_alpha_to_one: true,
    steps_offset: 1,
    timestep_spacing: 'leading',
    timestep_scaling: 10.0,
    trained_betas: null,
  },
  pipelineClass: 'LatentConsistencyModelPipeline',
};

export const ARCHITECTURE_CONFIGS: Record<Architecture, ArchitectureConfigs> = {
  tiny: TINY,
  'tiny-sd2': TINY_SD2,
  'tiny-lcm': TINY_LCM,
  sd15: SD15,
  sd21: SD21,
  sdxl: SDXL,
  'sdxl-tiny': SDXL_TINY,
};

/** TAESD (diffusers' AutoencoderTiny): `random-model` writes these alone, not as part of a model. */
export const TINY_VAE_ARCHITECTURES = ['taesd', 'taesd-tiny'] as const;
export type TinyVAEArchitecture = (typeof TINY_VAE_ARCHITECTURES)[number];

/** madebyollin/taesd's config.json (taesdxl's is the same). */
const TAESD = {
  _class_name: 'AutoencoderTiny',
  act_fn: 'relu',
  decoder_block_out_channels: [64, 64, 64, 64],
  encoder_block_out_channels: [64, 64, 64, 64],
  force_upcast: false,
  in_channels: 3,
  latent_channels: 4,
  latent_magnitude: 3,
  latent_shift: 0.5,
  num_decoder_blocks: [3, 3, 3, 1],
  num_encoder_blocks: [1, 3, 3, 3],
  out_channels: 3,
  scaling_factor: 1.0,
  upsampling_scaling_factor: 2,
};

export const TINY_VAE_CONFIGS: Record<TinyVAEArchitecture, { config: Record<string, unknown>; dtype: 'fp32' | 'fp16' }> = {
  taesd: { config: TAESD, dtype: 'fp32' },
  // The tiny test models' latent grid: 2 pixels per latent (two levels), 8 channels.
  'taesd-tiny': {
    config: { ...TAESD, decoder_block_out_channels: [8, 8], encoder_block_out_channels: [8, 8], num_decoder_blocks: [2, 1], num_encoder_blocks: [1, 2] },
    dtype: 'fp32',
  },
};
