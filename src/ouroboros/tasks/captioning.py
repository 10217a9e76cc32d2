"""Image captioning as a downstream task (Hataya et al., Tables 2 and 9): a captioner
trained on a (possibly contaminated) captioned set, then asked to caption test images.

The interface takes plain arrays, so it needs nothing from the data layer:

    fitted = train(images, captions, CaptionerConfig(), seed=0)  # uint8 N x C x H x W; a list of captions each
    fitted.generate(images) -> list[str]
    fitted.save(dir); load(dir)                                   # safetensors + captioner.json

Two architectures (``captioner.arch``):

- ``small`` (the default, CPU-sized): a small CNN encoder whose 4 x 4 grid of features is
  the memory of a transformer decoder (``torch.nn.TransformerDecoder``), trained from
  scratch with teacher forcing on every (image, caption) pair. Its word-level vocabulary
  is built from the training captions: words seen at least `min_count` times, plus
  ``<pad> <bos> <eos> <unk>``; it is saved in the JSON.
- ``blip``: a BLIP checkpoint in a local folder, fine-tuned (`ouroboros.tasks.blip`).

Both decode by beam search with BLIP's COCO setting: 3 beams, 5 to 20 tokens, lengths
counted and scored as Hugging Face's ``generate`` does (`ouroboros.tasks.beam_search`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ouroboros.data.imageset import printable
from ouroboros.errors import UserError
from ouroboros.generators.base import resolve_device
from ouroboros.generators.model_folder import read_json
from ouroboros.io import atomic_path
from ouroboros.tasks import blip
from ouroboros.tasks.beam_search import beam_search
from ouroboros.tasks.captioner_config import FORMAT, CaptionerConfig

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
_WORD = re.compile(r"\w+(?:'\w+)*")


# -- words ----------------------------------------------------------------------------------


def words(caption: str) -> list[str]:
    """Lower-case words; punctuation is dropped."""
    return _WORD.findall(caption.lower())


def build_vocabulary(captions: list[list[str]], min_count: int) -> list[str]:
    """The special tokens, then the words seen at least `min_count` times, most frequent
    first (ties alphabetical)."""
    counts = Counter(w for caps in captions for c in caps for w in words(c))
    kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    if not kept:
        raise UserError(f"the captions give an empty vocabulary: no word occurs {min_count} times or more "
                        f"({len(counts)} distinct words); lower captioner.min_count or give more captions")
    return [*SPECIALS, *kept]


def encode(caption: str, index: dict[str, int], max_length: int) -> list[int]:
    """``<bos> words <eos>``, cut to `max_length` tokens (the <eos> kept)."""
    ids = [index.get(w, UNK) for w in words(caption)][: max_length - 2]
    return [BOS, *ids, EOS]


def check_inputs(images, captions) -> np.ndarray:
    """uint8 N x C x H x W images, each with at least one caption (a list of strings)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise UserError(f"a captioner takes uint8 images N x C x H x W; got {images.dtype} of shape {images.shape}")
    if len(captions) != len(images):
        raise UserError(f"{len(images)} images but {len(captions)} caption lists; give one list per image")
    for i, caps in enumerate(captions):
        if isinstance(caps, str) or not caps or not all(isinstance(c, str) for c in caps):
            raise UserError(f"image {i} has no caption (got {printable(repr(caps))[:80]}); give each image a "
                            "list of one or more caption strings")
    return images


# -- the small captioner ------------------------------------------------------------------------

GRID = 4  # the encoder's output: a GRID x GRID grid of memory vectors


class SmallCaptioner(nn.Module):
    """CNN encoder -> GRID x GRID memory -> transformer decoder over word tokens."""

    def __init__(self, in_channels: int, vocab_size: int, dim: int, layers: int, heads: int, max_length: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, dim, 1), nn.BatchNorm2d(dim), nn.ReLU(),
            nn.AdaptiveAvgPool2d(GRID),
        )
        self.memory_position = nn.Parameter(0.02 * torch.randn(GRID * GRID, dim))
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_length, dim)
        layer = nn.TransformerDecoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(2).transpose(1, 2) + self.memory_position

    def forward(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every position of `tokens` (batch x length)."""
        length = tokens.shape[1]
        h = self.embed(tokens) + self.position(torch.arange(length, device=tokens.device))
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        return self.head(self.norm(self.decoder(h, memory, tgt_mask=causal, tgt_is_causal=True)))


def _to_float(images: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(images, device=device).float() / 127.5 - 1.0


def _build(config: CaptionerConfig, image_shape, vocab_size: int) -> SmallCaptioner:
    return SmallCaptioner(image_shape[0], vocab_size, config.dim, config.layers, config.heads, config.max_length)


def train(images, captions: list[list[str]], config: CaptionerConfig | None = None, seed: int = 0):
    """Fit a captioner on images (uint8 N x C x H x W) and their captions; returns an object
    with ``generate(images) -> list[str]`` and ``save(dir)``."""
    config = config or CaptionerConfig()
    config.validate()
    images = check_inputs(images, captions)
    if config.arch == "blip":
        return blip.BlipCaptioner.train(images, captions, config, seed)
    return FittedSmall.train(images, captions, config, seed)


def load(directory: str | Path):
    """A captioner saved by ``save(dir)`` (either architecture)."""
    directory = Path(directory)
    meta_path = directory / "captioner.json"
    if not meta_path.is_file():
        raise UserError(f"{printable(directory)} is not a saved captioner (no captioner.json)")
    meta = read_json(meta_path, "captioner file")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
        raise UserError(f"{printable(meta_path)} is not an ouroboros captioner file; save the captioner again")
    known = {f.name for f in fields(CaptionerConfig)}
    config = CaptionerConfig(**{k: v for k, v in meta["config"].items() if k in known})
    config.check_values("captioner.json config")
    if config.arch == "blip":
        return blip.BlipCaptioner.load(directory, config)
    return FittedSmall.load(directory, meta, config)


class FittedSmall:
    """A trained small captioner: the network, its vocabulary and its settings."""

    def __init__(self, model: SmallCaptioner, vocab: list[str], config: CaptionerConfig, image_shape):
        self.model = model.eval()
        self.vocab = list(vocab)
        self.config = config
        self.image_shape = tuple(int(s) for s in image_shape)

    @classmethod
    def train(cls, images: np.ndarray, captions: list[list[str]], config: CaptionerConfig, seed: int) -> "FittedSmall":
        device = resolve_device(config.device)
        vocab = build_vocabulary(captions, config.min_count)
        index = {w: i for i, w in enumerate(vocab)}
        # An epoch shows every image once, with one of its captions drawn at random: as
        # good as every (image, caption) pair per epoch here, at a fifth of the cost.
        encoded = [[encode(c, index, config.max_length) for c in caps] for caps in captions]
        length = max(len(ids) for caps in encoded for ids in caps)
        tokens = torch.full((sum(map(len, encoded)), length), PAD, dtype=torch.long)
        for row, ids in enumerate(ids for caps in encoded for ids in caps):
            tokens[row, : len(ids)] = torch.tensor(ids)
        counts = torch.tensor([len(caps) for caps in encoded])
        first = torch.cumsum(counts, 0) - counts  # each image's first row in `tokens`
        x_all = _to_float(images, device)

        torch.manual_seed(int(seed))
        model = _build(config, images.shape[1:], len(vocab)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
        steps_per_epoch = -(-len(images) // config.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.learning_rate,
                                                    total_steps=config.epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(int(seed))
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(len(images), generator=gen)
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size : (i + 1) * config.batch_size]
                if len(idx) < 2:  # BatchNorm needs two images
                    continue
                pick = (torch.rand(len(idx), generator=gen) * counts[idx]).long()  # one caption of each image
                batch = tokens[first[idx] + pick]
                batch = batch[:, : int((batch != PAD).sum(1).max())].to(device)  # no all-pad columns
                memory = model.encode(x_all[idx.to(device)])
                logits = model(memory, batch[:, :-1])  # teacher forcing
                loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), ignore_index=PAD)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
        return cls(model, vocab, config, images.shape[1:])

    @torch.no_grad()
    def generate(self, images, batch_size: int = 256) -> list[str]:
        """One caption per image, by beam search (`config.beam`, `min_length`, `max_length`)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise UserError(f"this captioner takes uint8 images of shape {self.image_shape}; "
                            f"got {images.dtype} {images.shape[1:]}")
        device = next(self.model.parameters()).device
        c = self.config
        out = []
        for i in range(0, len(images), batch_size):
            memory = self.model.encode(_to_float(images[i : i + batch_size], device))
            memory = memory.repeat_interleave(c.beam, 0)  # row r of the beams belongs to image r // beam

            def step(seqs: torch.Tensor) -> torch.Tensor:
                return self.model(memory, seqs)[:, -1]

            start = torch.full((len(memory) // c.beam, 1), BOS, dtype=torch.long, device=device)
            # <pad> and <bos> are never a training target; they are never written either.
            ids, _ = beam_search(step, start, EOS, c.beam, c.min_length, c.max_length, banned=(PAD, BOS))
            out += [" ".join(self.vocab[t] for t in seq) for seq in ids]
        return out

    def save(self, directory: str | Path) -> Path:
        with atomic_path(directory, is_dir=True) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, tmp / "model.safetensors")
            meta = {"format": FORMAT, "arch": "small", "config": asdict(self.config),
                    "image_shape": list(self.image_shape), "vocab": self.vocab}
            (tmp / "captioner.json").write_text(json.dumps(meta, indent=1))
        return Path(directory)

    @classmethod
    def load(cls, directory: Path, meta: dict, config: CaptionerConfig) -> "FittedSmall":
        vocab, shape = meta.get("vocab"), meta.get("image_shape")
        if (not isinstance(vocab, list) or tuple(vocab[:4]) != SPECIALS or len(set(vocab)) != len(vocab)
                or not all(isinstance(w, str) for w in vocab)):
            raise UserError(f"{printable(directory)}/captioner.json: its vocab must list {', '.join(SPECIALS)} "
                            "and then distinct words; save the captioner again")
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and 0 < s < 2**16
                                                                     for s in shape)):
            raise UserError(f"{printable(directory)}/captioner.json: image_shape must be [C, H, W]")
        weights = directory / "model.safetensors"
        if not weights.is_file():
            raise UserError(f"{printable(directory)} has no model.safetensors; save the captioner again")
        model = _build(config, shape, len(vocab))
        try:
            model.load_state_dict(load_file(weights))
        except (RuntimeError, OSError, ValueError) as exc:
            raise UserError(f"{printable(weights)} does not fit its captioner.json "
                            f"({' '.join(str(exc).split())[:200]}); save the captioner again") from None
        return cls(model.to(resolve_device(config.device)), vocab, config, shape)
