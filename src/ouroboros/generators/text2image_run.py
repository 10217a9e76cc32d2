"""Running a text-to-image work list (`ouroboros.generators.text2image`): split into
shards run by local processes (one per GPU on a CUDA machine) or Ray tasks, each image
skipped when it is already written and verified, the manifest written at the end."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ouroboros.data.imageset import printable
from ouroboros.errors import UserError, check_int
from ouroboros.generators.prompts import MANIFEST, SETTINGS, WorkItem, check_group_ids
from ouroboros.generators.text2image import (
    FORMAT, Settings, check_model, generate_shard, load_pipeline, record, resolve_dtype, split_work,
)
from ouroboros.io import read_bytes_bounded, write_json_atomic, write_text_atomic



def devices_for(device: str, workers: int | None) -> tuple[list[str], int]:
    """(devices, workers): 'auto' uses every GPU of the machine (one worker each) or the CPU."""
    import torch

    from ouroboros.preflight import resolve_device

    if device == "auto" and torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [str(resolve_device("--device", device))]
    return devices, len(devices) if workers is None else workers


# Fields of generate.json that describe a setting compared anyway (prompts_source: where
# the --prompts kind comes from); a folder written before they were recorded still resumes.
DESCRIPTIVE = ("prompts_source",)


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
        if key in DESCRIPTIVE and key not in old:
            continue
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
