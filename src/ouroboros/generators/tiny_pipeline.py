"""A tiny, randomly initialised Stable Diffusion pipeline saved as safetensors, for tests
and benchmarks (no download): ``ouroboros generate tiny-pipeline``."""

from __future__ import annotations

import json
from pathlib import Path

from ouroboros.generators.text2image import _quiet_libraries
from ouroboros.io import atomic_path



def _byte_symbols() -> list[str]:
    """The 256 symbols CLIP's byte-level BPE uses for the bytes 0..255."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for c in cs]


def build_tiny_pipeline(directory: str | Path, seed: int = 0, real_size: bool = False) -> Path:
    """Save a randomly initialised StableDiffusionPipeline to `directory` (safetensors).

    Tiny (default): a 2-level U-Net of 8/16 channels, a one-level VAE (scale factor 1),
    a 1-layer CLIP text encoder and a byte-level tokenizer (any text, no merges), so it
    runs at 8-32 px on a CPU in milliseconds. ``real_size``: Stable Diffusion 1.5's
    configuration (860M-parameter U-Net, VAE, 123M-parameter CLIP text encoder) with
    random weights, for GPU benchmarks. Nothing is downloaded.
    """
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    _quiet_libraries()
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    max_len = 77 if real_size else 32
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                                  model_max_length=max_len)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if real_size:
            text = CLIPTextConfig(vocab_size=len(vocab), hidden_size=768, intermediate_size=3072,
                                  num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                  projection_dim=768, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
            unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, sample_size=512,
                                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                layers_per_block=2)
        else:
            text = CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, max_position_embeddings=max_len, projection_dim=16,
                                  bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
            unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8,
                                        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                        attention_head_dim=2, norm_num_groups=4)
            vae = AutoencoderKL(block_out_channels=(8,), latent_channels=4, norm_num_groups=4, sample_size=8,
                                down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))
        encoder = CLIPTextModel(text)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    directory = Path(directory)
    with atomic_path(directory, is_dir=True) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
    return directory
