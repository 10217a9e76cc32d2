"""The captioner's settings (the ``captioner:`` config section) and the check of a BLIP
checkpoint folder, made before anything is loaded or written.

A BLIP folder is what ``model.save_pretrained(DIR)`` and ``processor.save_pretrained(DIR)``
write: ``config.json`` (``model_type: blip``, a ``BlipForConditionalGeneration``),
``model.safetensors`` (or shards named by ``model.safetensors.index.json``),
``preprocessor_config.json`` (transformers 5: ``processor_config.json``) and the
tokenizer's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ouroboros.data.imageset import printable
from ouroboros.errors import UserError, check_float, check_int, check_text
from ouroboros.generators.model_folder import check_component_folder, read_json

FORMAT = "ouroboros.Captioner"  # captioner.json's "format", either arch
DEFAULT_LR = {"small": 1e-3, "blip": 1e-5}  # blip: BLIP's COCO fine-tuning (init_lr 1e-5)
FIX = "save one with BlipForConditionalGeneration.save_pretrained(DIR) and BlipProcessor.save_pretrained(DIR)"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")  # transformers 4.x, 5.x


@dataclass
class CaptionerConfig:
    arch: Literal["small", "blip"] = "small"
    model: Optional[str] = None  # blip: a local folder holding a BLIP checkpoint and its processor
    epochs: int = 15  # small: each image with one of its captions, drawn afresh every epoch
    batch_size: int = 64  # images per step
    lr: Optional[float] = None  # None: 1e-3 for small, 1e-5 for blip
    beam: int = 3  # 1: greedy search
    min_length: int = 5  # tokens, <bos> and <eos> included (Hugging Face generate's count)
    max_length: int = 20  # the same count; longer training captions are cut to fit
    min_count: int = 5  # small: a word seen fewer times in the training captions becomes <unk>
    dim: int = 64  # small: the decoder's width
    layers: int = 2  # small: decoder layers
    heads: int = 4  # small: attention heads (divides dim)
    device: str = "auto"

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.arch] if self.lr is None else self.lr

    def check_values(self, where: str = "captioner") -> None:
        """Every field in range, without looking at the `model` folder."""
        if self.arch not in DEFAULT_LR:
            raise UserError(f"{where}.arch: unknown captioner {self.arch!r}; use small or blip")
        if self.arch == "blip" and self.model is None:
            raise UserError(f"{where}.model: arch blip needs the folder of a BLIP checkpoint (saved with "
                            "save_pretrained); nothing is downloaded")
        if self.arch != "blip" and self.model is not None:
            raise UserError(f"{where}.model is only read by arch blip; remove it or set {where}.arch: blip")
        if self.model is not None:
            check_text(f"{where}.model", self.model)
        check_int(f"{where}.epochs", self.epochs, 1, 10_000)
        check_int(f"{where}.batch_size", self.batch_size, 2, 65536)  # BatchNorm needs two images
        if self.lr is not None:
            check_float(f"{where}.lr", self.lr, 0.0, 1.0, lo_open=True)
        check_int(f"{where}.beam", self.beam, 1, 64)
        check_int(f"{where}.max_length", self.max_length, 2, 512)
        check_int(f"{where}.min_length", self.min_length, 0, self.max_length)
        check_int(f"{where}.min_count", self.min_count, 1, 1_000_000)
        check_int(f"{where}.dim", self.dim, 4, 4096)
        check_int(f"{where}.layers", self.layers, 1, 48)
        check_int(f"{where}.heads", self.heads, 1, 64)
        if self.dim % self.heads:
            raise UserError(f"{where}.heads ({self.heads}) must divide {where}.dim ({self.dim})")
        check_text(f"{where}.device", self.device, 64)

    def validate(self, where: str = "captioner") -> None:
        """`check_values`, then the BLIP folder's files (without loading any weights)."""
        self.check_values(where)
        if self.arch == "blip":
            check_blip_folder(self.model, f"{where}.model")



def check_blip_folder(folder, where: str = "captioner.model") -> Path:
    """A local folder holding a BLIP captioning checkpoint and its processor, checked
    without loading weights; anything else is a `UserError` naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{where}: BLIP folder not found: {printable(folder)}; give a local folder ({FIX})")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{where}: {printable(folder)} is not a BLIP checkpoint (no config.json); {FIX}")
    try:
        config = read_json(config_path, "model config")
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != "blip":
        raise UserError(f"{where}: {printable(folder)} is not a BLIP checkpoint: its config.json has model_type "
                        f"{printable(repr(kind))[:60]}, not 'blip'; {FIX}")
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and "BlipForConditionalGeneration" not in archs:
        raise UserError(f"{where}: {printable(folder)} holds a {printable(', '.join(map(str, archs)))[:80]}, not a "
                        "BLIP captioning model (BlipForConditionalGeneration); use a captioning checkpoint")
    try:
        check_component_folder(folder.parent, folder.name)  # safetensors weights (never pickle), sizes
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise UserError(f"{where}: {printable(folder)} has no image processor ({' or '.join(PROCESSOR_FILES)}); "
                        "save the BlipProcessor into the same folder")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{where}: {printable(folder)} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); "
                        "save the BlipProcessor into the same folder")
    return folder


