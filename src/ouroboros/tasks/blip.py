"""Fine-tuning a BLIP captioner (Li et al. 2022; Hataya et al.'s captioning model) from a
checkpoint in a local folder, through transformers' ``BlipForConditionalGeneration`` and
``BlipProcessor``. Nothing is downloaded (``local_files_only=True``) and weights are read
from safetensors only.

The folder is what ``model.save_pretrained(DIR)`` and ``processor.save_pretrained(DIR)``
write; `ouroboros.tasks.captioner_config.check_blip_folder` checks it before transformers
reads anything.

Training follows BLIP's COCO fine-tuning: every (image, caption) pair, the caption's first
token ([CLS]) replaced by the decoder's [DEC] start token, padding left out of the loss,
AdamW (weight decay 0.05) with a cosine schedule; bf16 autocast on CUDA. BLIP's training
augmentation and its "a picture of" prompt are left out. Decoding: beam search with the
settings of `ouroboros.tasks.captioning.CaptionerConfig` (``generate``'s own scoring).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ouroboros.data.imageset import printable
from ouroboros.errors import UserError
from ouroboros.generators.base import resolve_device
from ouroboros.io import atomic_path
from ouroboros.tasks.captioner_config import FORMAT, check_blip_folder

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no notices on import


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("captioner.arch blip needs transformers: pip install 'transformers>=4.40'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _load(folder: Path, where: str):
    """Model and processor from a checked folder: local files, safetensors only."""
    check_blip_folder(folder, where)
    transformers = _transformers()
    try:
        model = transformers.BlipForConditionalGeneration.from_pretrained(folder, use_safetensors=True,
                                                                           local_files_only=True)
        processor = transformers.BlipProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise UserError(f"{where}: cannot load the BLIP checkpoint in {printable(folder)}: "
                        f"{exc.__class__.__name__}: {printable(' '.join(str(exc).split()))[:300]}") from None
    return model, processor


def _rgb(images: np.ndarray) -> list[np.ndarray]:
    """H x W x 3 uint8 arrays, greyscale repeated to three channels."""
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    if images.shape[1] != 3:
        raise UserError(f"BLIP takes greyscale or RGB images; got {images.shape[1]} channels")
    return list(images.transpose(0, 2, 3, 1))


def text_batch(tokenizer, captions: list[str], bos: int, max_length: int) -> dict:
    """Decoder inputs and targets for teacher forcing, as BLIP's COCO fine-tuning makes
    them: ``[DEC] words [SEP]`` (the tokenizer's [CLS] replaced by the decoder's start
    token, which is where ``generate`` starts), padding left out of the loss (-100)."""
    text = tokenizer(captions, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    input_ids = text["input_ids"].clone()
    input_ids[:, 0] = bos
    labels = input_ids.masked_fill(text["attention_mask"] == 0, -100)
    return {"input_ids": input_ids, "attention_mask": text["attention_mask"], "labels": labels}


class BlipCaptioner:
    """A BLIP checkpoint with its processor and the captioner settings."""

    def __init__(self, model, processor, config):
        self.model = model.eval()
        self.processor = processor
        self.config = config

    def _pixels(self, images: np.ndarray):
        device = next(self.model.parameters()).device
        return self.processor(images=_rgb(images), return_tensors="pt")["pixel_values"].to(device)

    @classmethod
    def train(cls, images: np.ndarray, captions: list[list[str]], config, seed: int) -> "BlipCaptioner":
        import torch

        model, processor = _load(Path(config.model), "captioner.model")
        device = resolve_device(config.device)
        model.to(device).train()
        fitted = cls(model, processor, config)
        pairs = [(i, c) for i, caps in enumerate(captions) for c in caps]
        steps_per_epoch = -(-len(pairs) // config.batch_size)
        torch.manual_seed(int(seed))
        opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.05)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs * steps_per_epoch)
        bos = model.config.text_config.bos_token_id
        gen = torch.Generator().manual_seed(int(seed))
        for _ in range(config.epochs):
            order = torch.randperm(len(pairs), generator=gen).tolist()
            for i in range(steps_per_epoch):
                batch = [pairs[j] for j in order[i * config.batch_size : (i + 1) * config.batch_size]]
                text = text_batch(processor.tokenizer, [c for _, c in batch], bos, config.max_length)
                pixels = fitted._pixels(images[[j for j, _ in batch]])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    loss = model(pixel_values=pixels, **{k: v.to(device) for k, v in text.items()}).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        return fitted

    def generate(self, images, batch_size: int = 64) -> list[str]:
        import torch

        c, out = self.config, []
        images = np.asarray(images)
        for i in range(0, len(images), batch_size):
            with torch.no_grad():
                ids = self.model.generate(pixel_values=self._pixels(images[i : i + batch_size]), num_beams=c.beam,
                                          min_length=c.min_length, max_length=c.max_length, do_sample=False)
            out += [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out

    def save(self, directory: str | Path) -> Path:
        from dataclasses import asdict

        with atomic_path(directory, is_dir=True) as tmp:
            self.model.save_pretrained(tmp / "blip", safe_serialization=True)
            self.processor.save_pretrained(tmp / "blip")
            meta = {"format": FORMAT, "arch": "blip", "config": asdict(self.config)}
            (tmp / "captioner.json").write_text(json.dumps(meta, indent=1))
        return Path(directory)

    @classmethod
    def load(cls, directory: Path, config) -> "BlipCaptioner":
        model, processor = _load(directory / "blip", "saved captioner")
        return cls(model.to(resolve_device(config.device)), processor, config)
