/**
 * Component configs of the real SD 1.5 and SD 2.1 checkpoints (as their diffusers folders carry
 * them), and a tiny one for tests: `random-model` writes these with random weights.
 */
export const ARCHITECTURES = ['tiny', 'sd15', 'sd21'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

export interface ArchitectureConfigs {
  unet: Record<string, unknown>;
  vae: Record<string, unknown>;
  textEncoder: Record<string, unknown>;
  scheduler: Record<string, unknown>;
  schedulerClass: string;
  /** tokenizer pad token: SD 1.x pads with the end token, SD 2.x with "!". */
  padToken: string;
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
};

export const ARCHITECTURE_CONFIGS: Record<Architecture, ArchitectureConfigs> = { tiny: TINY, sd15: SD15, sd21: SD21 };
