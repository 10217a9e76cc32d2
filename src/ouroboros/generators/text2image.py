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
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ouroboros.data.imageset import printable
from ouroboros.errors import UserError, check_float, check_int
from ouroboros.generators.model_folder import check_component_folder, components, read_json, read_model_index
from ouroboros.generators.prompts import MANIFEST, SETTINGS, WorkItem, check_group_ids  # noqa: F401
from ouroboros.io import atomic_path, read_bytes_bounded, write_json_atomic, write_text_atomic

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


# -- running a work list ----------------------------------------------------------------


def devices_for(device: str, workers: int | None) -> tuple[list[str], int]:
    """(devices, workers): 'auto' uses every GPU of the machine (one worker each) or the CPU."""
    import torch

    from ouroboros.preflight import resolve_device

    if device == "auto" and torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [str(resolve_device("--device", device))]
    return devices, len(devices) if workers is None else workers


def check_settings_file(out: Path, meta: dict) -> None:
    """Refuse to add images made otherwise to a folder of earlier ones."""
    path = out / SETTINGS
    if not path.exists():
        return
    try:
        old = json.loads(read_bytes_bounded(path, "settings file", "text").decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"cannot read {printable(path)} ({exc}); remove it or choose another --out") from None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise UserError(f"{printable(path)} was not written by ouroboros generate text2image; choose another --out")
    for key, value in meta.items():
        if old.get(key) != value:
            raise UserError(f"{printable(out)} holds images made with {key} = {old.get(key)!r}, not {value!r}; "
                            "use the same settings to resume, or another --out")


class Progress:
    """'images done / total, images per second' on one updating stderr line."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.made = self.skipped = 0
        self.start = self.last = time.perf_counter()

    def __call__(self, kind: str, n: int) -> None:
        setattr(self, kind, getattr(self, kind) + n)
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.5 or self.made + self.skipped == self.total):
            self.last = now
            print(f"\r{self.line()}", end="", file=sys.stderr, flush=True)

    def rate(self) -> float:
        return self.made / max(time.perf_counter() - self.start, 1e-9)

    def line(self) -> str:
        there = f" ({self.skipped} already there)" if self.skipped else ""
        return f"text2image: {self.made + self.skipped}/{self.total} images{there}, {self.rate():.2f} images/s"


def generate(items: list[WorkItem], settings: Settings, out: str | Path, workers: int | None = None,
             device: str = "auto", batch_size: int = 0, executor: str = "local", ray_address: str | None = None,
             progress: bool = True, meta: dict | None = None) -> dict:
    """Make the images of `items` in `out`; write manifest.jsonl. Returns counts and timing."""
    from ouroboros.preflight import check_output_dir

    settings.validate()
    check_group_ids(list(dict.fromkeys(item.group for item in items)), "the work list")  # folder names
    out = check_output_dir(out)
    check_model(settings.model, settings)
    devices, workers = devices_for(device, workers)
    check_int("--workers", workers, 1, 1024)
    check_int("--batch-size", batch_size, 0, 100_000)
    dtype = resolve_dtype(settings.dtype, devices[0])
    meta = {"format": FORMAT, "model": settings.model_name, "steps": settings.steps,
            "guidance_scale": settings.guidance_scale, "size": settings.size, "scheduler": settings.scheduler,
            "dtype": dtype, "safety_checker": settings.safety_checker, "watermark": settings.watermark,
            **(meta or {})}
    check_settings_file(out, meta)
    pipe = None
    if executor == "ray":  # a missing extra or a dead address: found before anything is written
        from ouroboros.executors.address import check_reachable

        import_ray()
        if ray_address is not None:
            check_reachable(ray_address)
    elif ray_address is not None:
        raise UserError("--ray-address applies to the ray executor; add --executor ray")
    elif workers == 1:  # loaded before anything is written: damaged weights fail here
        pipe = load_pipeline(settings, devices[0], dtype)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SETTINGS, meta)
    shards = split_work(items, workers)
    prog = Progress(len(items), progress)
    if executor == "ray":
        scheduler = _run_ray(shards, settings, out, devices, batch_size, prog, ray_address)
    elif workers == 1:
        generate_shard(items, settings, out, devices[0], batch_size, prog, pipe=pipe)
        scheduler = type(pipe.scheduler).__name__
    else:
        scheduler = _run_processes(shards, settings, out, devices, batch_size, prog)
    if progress:
        print(file=sys.stderr)
    write_manifest(out, items, settings, dtype, scheduler)
    return {"made": prog.made, "skipped": prog.skipped, "seconds": time.perf_counter() - prog.start,
            "images_per_second": prog.rate(), "scheduler": scheduler}


def write_manifest(out: Path, items: list[WorkItem], settings: Settings, dtype: str, scheduler: str) -> None:
    """manifest.jsonl: one JSON line per image of the work list, in its order (atomic)."""
    lines = [json.dumps(record(it, settings, dtype, scheduler), ensure_ascii=False) for it in items]
    write_text_atomic(out / MANIFEST, "\n".join(lines) + "\n")


def _worker(shard, settings, out, device, batch_size, threads, queue) -> None:
    """A local worker process: one shard on one device; messages go to `queue`."""
    import traceback

    import torch

    torch.set_num_threads(threads)
    try:
        pipe = load_pipeline(settings, device, resolve_dtype(settings.dtype, device))
        generate_shard(shard, settings, out, device, batch_size, lambda kind, n: queue.put((kind, n)), pipe=pipe)
        queue.put(("done", type(pipe.scheduler).__name__))
    except UserError as exc:
        queue.put(("user_error", str(exc)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        queue.put(("crash", traceback.format_exc()))


def _run_processes(shards, settings, out, devices, batch_size, prog) -> str:
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    q = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // len(shards))
    procs = [ctx.Process(target=_worker, args=(shard, settings, out, devices[i % len(devices)], batch_size,
                                                 threads, q), daemon=True)
             for i, shard in enumerate(shards) if shard]
    for p in procs:
        p.start()
    done, scheduler = 0, ""
    try:
        while done < len(procs):
            try:
                kind, value = q.get(timeout=1.0)
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("a text2image worker died without a word (killed, or out of memory?)")
                continue
            if kind in ("made", "skipped"):
                prog(kind, value)
            elif kind == "done":
                done, scheduler = done + 1, value
            elif kind == "user_error":
                raise UserError(value)
            else:
                raise RuntimeError(f"a text2image worker failed:\n{value}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    return scheduler


def import_ray():
    from ouroboros.executors.ray import import_ray as the_executors

    return the_executors()


def _ray_shard(shard, settings, out, device, batch_size, queue) -> str:
    pipe = load_pipeline(settings, device, resolve_dtype(settings.dtype, device))
    generate_shard(shard, settings, Path(out), device, batch_size, lambda kind, n: queue.put((kind, n)), pipe=pipe)
    return type(pipe.scheduler).__name__


def _run_ray(shards, settings, out, devices, batch_size, prog, address) -> str:
    """One Ray task per shard (one GPU each on a CUDA cluster); `out` must be storage
    every node sees. Progress comes back through a Ray queue."""
    ray = import_ray()
    from ray.util.queue import Empty, Queue

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    gpu = devices[0].startswith("cuda")
    task = ray.remote(num_gpus=1 if gpu else 0, num_cpus=1, max_retries=0)(_ray_shard)
    q = Queue()
    refs = [task.remote(shard, settings, str(out.resolve()), "cuda" if gpu else devices[0], batch_size, q)
            for shard in shards if shard]
    pending, scheduler = list(refs), ""

    def drain():
        while True:
            try:
                kind, n = q.get_nowait()
            except Empty:
                return
            prog(kind, n)

    try:
        while pending:
            ready, pending = ray.wait(pending, timeout=0.5)
            drain()
            for ref in ready:
                try:
                    scheduler = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
                    if isinstance(cause, UserError):
                        raise UserError(str(cause)) from None
                    raise
        drain()
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return scheduler


# -- a tiny pipeline for tests and benchmarks ---------------------------------------------


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


def settings_from(args) -> Settings:
    return Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
