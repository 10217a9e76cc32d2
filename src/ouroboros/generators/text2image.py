"""Text-to-image contamination sets: any diffusers text-to-image pipeline saved in a
local folder, driven by a work list of prompts (``ouroboros.generators.prompts``).

Output: an ImageFolder ``out/<group id>/<index>.png``, ``out/manifest.jsonl`` (one JSON
line per image: file, class, index, prompt, seed, model, scheduler, steps,
guidance_scale, size, dtype, safety_checker, watermark) and ``out/generate.json`` (the
run's settings). Every PNG carries the same fields as text chunks.

Guarantees:

- Every image has its own seed, derived from (base seed, group, index), and its own
  CPU ``torch.Generator`` inside a batch (diffusers takes one generator per image), so
  an image does not depend on the batch size or on how the work is split, and any
  image can be regenerated alone.
- A rerun skips every image already written and verified (it decodes, and its text
  chunks match its work item), regenerates a damaged one, and never duplicates. Each
  PNG is written to a temporary name and renamed into place. A rerun with other
  settings (model, steps, guidance, size, scheduler, dtype, seed, prompts) in the same
  folder is refused.
- The work list splits into `workers` shards of sizes differing by at most one
  (`split_work`), run by local processes (one per GPU on a CUDA machine) or Ray tasks.

``guidance_scale`` is diffusers' scale s (eps = eps_uncond + s (eps_cond - eps_uncond));
in the project's convention w = s - 1. The paper's settings are the defaults: 50 steps,
guidance scale 7.5, 512 px, the pipeline's own scheduler (PNDM/PLMS for SD 1.x).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import secrets
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ouroboros.data.imageset import printable
from ouroboros.errors import UserError, check_float, check_int
from ouroboros.generators.model_folder import check_component_folder, components, read_json, read_model_index
from ouroboros.generators.prompts import MANIFEST, SETTINGS, WorkItem, check_group_ids  # noqa: F401

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no torchvision / accelerate notices on import

FORMAT = "ouroboros.text2image"
SCHEDULERS = {
    "default": None,  # the pipeline's own (PNDM, the paper's PLMS, for Stable Diffusion 1.x)
    "pndm": "PNDMScheduler",
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "dpm-solver": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}
DTYPES = ("auto", "fp32", "fp16", "bf16")
MAX_AUTO_BATCH = 64  # CUDA: the first batch tried; halved on out-of-memory until it fits


@dataclass(frozen=True)
class Settings:
    """What determines the images besides the work item (and is recorded with each)."""

    model: str  # the pipeline folder
    steps: int = 50
    guidance_scale: float = 7.5
    size: int = 512
    scheduler: str = "default"
    dtype: str = "auto"  # auto: fp16 on CUDA, fp32 elsewhere
    safety_checker: bool = False  # the paper disabled both
    watermark: bool = False

    def validate(self) -> None:
        check_int("--steps", self.steps, 1, 10_000)
        check_float("--guidance-scale", self.guidance_scale, 0.0, 100.0)
        check_int("--size", self.size, 8, 8192)
        if self.size % 8:
            raise UserError(f"--size must be a multiple of 8 (the latent grid); got {self.size}")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"unknown --scheduler {self.scheduler!r}; use one of {', '.join(SCHEDULERS)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown --dtype {self.dtype!r}; use one of {', '.join(DTYPES)}")

    @property
    def model_name(self) -> str:
        return Path(self.model).resolve().name


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' -> fp16 on CUDA, fp32 elsewhere."""
    if dtype == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    return dtype


def record(item: WorkItem, settings: Settings, dtype: str, scheduler: str) -> dict:
    """The provenance of one image: a manifest line, and its PNG text chunks."""
    return {"file": item.file, "class": item.group, "index": item.index, "prompt": item.prompt, "seed": item.seed,
            "model": settings.model_name, "scheduler": scheduler, "steps": settings.steps,
            "guidance_scale": settings.guidance_scale, "size": settings.size, "dtype": dtype,
            "safety_checker": settings.safety_checker, "watermark": settings.watermark}


# -- the work split ---------------------------------------------------------------------


def split_work(items: list, n: int) -> list[list]:
    """`n` contiguous shards whose sizes differ by at most one; together exactly `items`."""
    check_int("workers", n, 1, 100_000)
    q, r = divmod(len(items), n)
    bounds = np.cumsum([0] + [q + (i < r) for i in range(n)])
    return [items[bounds[i]:bounds[i + 1]] for i in range(n)]


def batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# -- the pipeline folder ----------------------------------------------------------------


def _pipeline_class(model: Path):
    """The diffusers pipeline class a saved folder names, checked to be text-to-image."""
    index = read_model_index(model)  # checked before diffusers sees it
    index_path = model / "model_index.json"
    _quiet_libraries()
    import diffusers

    name = index.get("_class_name")
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if not (inspect.isclass(cls) and issubclass(cls, diffusers.DiffusionPipeline)):
        raise UserError(f"{printable(index_path)} names {printable(name)!r}, which is not a diffusers pipeline")
    params = inspect.signature(cls.__call__).parameters
    if "prompt" not in params or "height" not in params or {"image", "mask_image", "video"} & set(params):
        raise UserError(f"{printable(model)} holds a {name}, which is not a text-to-image pipeline "
                        "(it must take a prompt and no input image)")
    return cls, index


def check_model(model: str | Path, settings: Settings) -> None:
    """Check a pipeline folder without loading its weights: a text-to-image pipeline,
    every component's folder present, model weights as safetensors (never pickle), the
    size a multiple of the VAE's scale factor, and the flags supported."""
    model = Path(model)
    cls, index = _pipeline_class(model)
    for comp in components(index):  # no pickle, no FIFO, no file past the size limits (model_folder)
        check_component_folder(model, comp)
    vae = model / "vae" / "config.json"
    if vae.exists():
        try:
            factor = 2 ** (len(read_json(vae, "VAE config")["block_out_channels"]) - 1)
        except (KeyError, TypeError):
            factor = 8
        if settings.size % factor:
            raise UserError(f"--size {settings.size} must be a multiple of the VAE's scale factor {factor}")
    init = inspect.signature(cls.__init__).parameters
    if settings.safety_checker and "safety_checker" not in components(index):
        raise UserError(f"--safety-checker: {printable(model)} has no safety checker; leave the flag out")
    if settings.watermark and "add_watermarker" not in init:
        raise UserError(f"--watermark: a {cls.__name__} has no watermarker; leave the flag out")


def _quiet_libraries() -> None:
    import diffusers

    try:
        import transformers
    except ImportError:
        raise UserError("text-to-image pipelines need transformers: pip install 'ouroboros[text2image]'") from None

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(settings: Settings, device: str, dtype: str):
    """The pipeline on `device` in `dtype`, with SDPA attention and the chosen scheduler.
    Weights are read from safetensors only."""
    import diffusers
    import torch

    _quiet_libraries()
    cls, index = _pipeline_class(Path(settings.model))
    for comp in components(index):  # the folder may have changed since check_model: weights checked again
        check_component_folder(Path(settings.model), comp)
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    kwargs = {}
    if not settings.safety_checker and "safety_checker" in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if "add_watermarker" in inspect.signature(cls.__init__).parameters:
        kwargs["add_watermarker"] = settings.watermark
    try:
        with warnings.catch_warnings():  # newer diffusers call it `dtype`; older ones know only `torch_dtype`
            warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
            pipe = cls.from_pretrained(settings.model, torch_dtype=torch_dtype, use_safetensors=True,
                                       local_files_only=True, **kwargs)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise UserError(f"cannot load the pipeline in {printable(settings.model)}: "
                        f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}") from None
    if SCHEDULERS[settings.scheduler] is not None:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[settings.scheduler]).from_config(pipe.scheduler.config)
    from diffusers.models.attention_processor import AttnProcessor2_0

    for part in ("unet", "transformer", "vae"):
        module = getattr(pipe, part, None)
        if module is not None and hasattr(module, "set_attn_processor"):
            try:
                module.set_attn_processor(AttnProcessor2_0())  # SDPA (flash / memory-efficient kernels)
            except (ValueError, TypeError):
                pass  # a model with attention of its own kind keeps it
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# -- making and checking images ---------------------------------------------------------


def png_info(rec: dict):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in rec.items():
        info.add_text(k, json.dumps(v) if not isinstance(v, str) else v)  # non-Latin-1 text goes in iTXt
    return info


def verified(out: Path, rec: dict) -> bool:
    """True when the image is there, decodes, and its text chunks are exactly `rec`."""
    from PIL import Image

    path = out / rec["file"]
    if not path.is_file():
        return False
    try:
        with Image.open(path, formats=["PNG"]) as im:
            im.load()
            text = dict(im.text)
            size_ok = im.size == (rec["size"], rec["size"])
    except Exception:  # noqa: BLE001 - any failure to decode means: make it again
        return False
    expected = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in rec.items()}
    return size_ok and text == expected


def save_png(out: Path, rec: dict, image: np.ndarray) -> None:
    """Write one H x W x 3 uint8 image with its provenance under a hidden temporary name
    and rename it into place: a killed run never leaves a half-written file under an
    image's name. Files are not flushed to disk one by one (that would cost more than
    making a small image); after a power cut, a resume's verification (decode + text
    chunks) finds any damaged file and makes it again."""
    from PIL import Image

    path = out / rec["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}.png")
    try:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=png_info(rec))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Pipeline output in [0, 1] (N x H x W x 3 float) -> uint8, as diffusers' PIL output rounds."""
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def run_pipeline(pipe, prompts: list[str], seeds: list[int], settings: Settings) -> np.ndarray:
    """Images for `prompts`, image i from a CPU generator seeded with seeds[i] (the same
    noise on any device and in any batch)."""
    import torch

    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    with torch.inference_mode():
        result = pipe(prompt=prompts, num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale,
                      height=settings.size, width=settings.size, generator=generators, output_type="np")
    return to_uint8(np.asarray(result.images, dtype=np.float32))


def generate_shard(items: list[WorkItem], settings: Settings, out: Path, device: str, batch_size: int,
                   report: Callable[[str, int], None] = lambda kind, n: None, pipe=None) -> int:
    """Make every image of `items` that is not already there and verified; returns the
    number made. `report(kind, n)` is called with ("skipped" | "made", count)."""
    import torch

    if not items:
        return 0
    dtype = resolve_dtype(settings.dtype, device)
    pipe = pipe or load_pipeline(settings, device, dtype)
    scheduler = type(pipe.scheduler).__name__
    pending = []
    for item in items:
        if verified(out, record(item, settings, dtype, scheduler)):
            report("skipped", 1)
        else:
            pending.append(item)
    size = batch_size or (MAX_AUTO_BATCH if device.startswith("cuda") else 4)
    made, i = 0, 0
    while i < len(pending):
        chunk = pending[i:i + size]
        try:
            images = run_pipeline(pipe, [it.prompt for it in chunk], [it.seed for it in chunk], settings)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise UserError(f"one {settings.size} px image does not fit in the memory of {device}; "
                                "use a smaller --size or another device") from None
            torch.cuda.empty_cache()
            size //= 2  # per-image generators: the images do not depend on the batch size
            continue
        for item, image in zip(chunk, images):
            save_png(out, record(item, settings, dtype, scheduler), image)
        made += len(chunk)
        i += len(chunk)
        report("made", len(chunk))
    return made


def settings_from(args) -> Settings:
    return Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
