"""Checks that run before a study writes anything: the output folder and a dry build.

Config validation (ouroboros.config) checks each value on its own. Some problems only
show once the data is known or the components exist: a device that is not there, a
U-Net too deep for the image size, a classifier shift as wide as the image. Rather
than meet them inside a worker, after config.yaml and cache/ are written, a study
builds every component once here, for the data's image shape and class count, and
runs one forward pass on a batch of two (no training), after checking that the
configured devices exist.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import tempfile
from pathlib import Path

from ouroboros.errors import UserError

NAME_MAX = 255  # bytes per path component on every common file system


def check_output_dir(run_dir: str | os.PathLike) -> Path:
    """Fail unless `run_dir` is (or can become) a writable folder; creates nothing.

    A probe file is created and removed in the folder, or in its nearest existing
    ancestor when it does not exist yet, so that permissions, a read-only file
    system or a full disk show up before any work is done.
    """
    run_dir = Path(run_dir)
    text = str(run_dir)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"output path {ascii(text)} is not valid UTF-8; choose a name with UTF-8 characters") from None
    for part in run_dir.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise UserError(f"output path has a name of {len(os.fsencode(part))} bytes ({part[:20]}...); "
                            f"the file system allows {NAME_MAX}: choose a shorter --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output path {run_dir} exists and is not a folder; choose another --out")
    existing = run_dir
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"output path {run_dir} is under {existing}, which is a file, not a folder; "
                        "choose another --out")
    _probe(existing, run_dir)
    return run_dir


def _probe(folder: Path, run_dir: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".ouroboros-probe-", dir=folder)
    except OSError as exc:
        raise UserError(f"cannot write in {folder} (for output {run_dir}): {exc.strerror}; "
                        "choose another --out or fix its permissions") from None
    try:
        os.write(fd, b"probe")
        os.fsync(fd)
    except OSError as exc:
        fix = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another --out"
        raise UserError(f"cannot write in {folder} (for output {run_dir}): {exc.strerror}; {fix}") from None
    finally:
        os.close(fd)
        os.unlink(name)


def resolve_device(where: str, device: str):
    """A torch device that exists here: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."""
    import torch

    from ouroboros.generators.base import resolve_device as resolve

    try:
        dev = resolve(device)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"{where}: unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{where}: device {device!r} cannot train models; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"{where}: {device!r} requested but this machine has {torch.cuda.device_count()} "
                        "CUDA device(s); use auto, cuda or cuda:0")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{where}: device 'mps' requested but MPS is not available; use auto or cpu")
    return dev


def check_unet_size(depth: int, h: int, w: int) -> None:
    """The U-Net halves the image at each of its levels but the last, and its skip
    connections need every halving exact: both sides must be multiples of 2^(depth-1)."""
    factor = 2 ** (depth - 1)
    if h % factor == 0 and w % factor == 0:
        return
    fits = max(d for d in range(1, depth) if h % 2 ** (d - 1) == 0 and w % 2 ** (d - 1) == 0)
    sizes = ", ".join(str(factor * k) for k in range(max(1, min(h, w) // factor - 1), min(h, w) // factor + 3))
    raise UserError(f"the U-Net of generator.depth {depth} takes images whose sides are multiples of {factor} "
                    f"(e.g. {sizes}); the data's are {h}x{w}: resize them (data.image_size for an ImageFolder) "
                    f"or lower generator.depth to {fits}")


def check_components(config, image_shape: tuple[int, int, int], num_classes: int) -> None:
    """Build the study's denoiser, schedulers and classifiers for this data once; no training."""
    import torch

    from ouroboros.features.classifier import build_classifier
    from ouroboros.generators.denoisers import build_denoiser
    from ouroboros.generators.diffusion import _scheduler

    c, h, w = image_shape
    gen, clf = config.generator, config.classifier
    if num_classes < 2:
        raise UserError(f"the data has {num_classes} class(es); a study needs at least 2")
    resolve_device("generator.device", gen.device)
    resolve_device("classifier.device", clf.device)
    if gen.denoiser == "unet":
        check_unet_size(gen.depth, h, w)
    if clf.shift >= min(h, w):
        raise UserError(f"classifier.shift ({clf.shift}) must be smaller than the images ({h}x{w})")

    steps = [gen.sample_steps]
    archs = [clf.arch]
    if config.study == "contamination":
        steps += list(config.contamination.diverse_sample_steps)
        archs = list(config.contamination.archs)
    # The dry build runs on the CPU: shapes fail the same way everywhere, and the parent
    # process of a multi-worker run should not hold a GPU context of its own. Building
    # initialises weights from torch's global generator; fork it so that a dry run
    # leaves the seeded training that follows unchanged.
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        x = torch.zeros((2, c, h, w))
        what = f"generator (denoiser {gen.denoiser}, hidden {gen.hidden}, depth {gen.depth})"
        try:
            labels = gen.label_count(num_classes)  # 0 when unconditional: the null label only
            model = build_denoiser(gen.denoiser, image_shape, labels, gen.hidden, gen.depth)
            t = torch.tensor([0, gen.num_train_timesteps - 1])
            y = torch.tensor([0, labels])  # a class (the null label when unconditional) and the null label
            out = model(x, t, y)
            if out.shape != x.shape:
                raise ValueError(f"it predicts noise of shape {tuple(out.shape[1:])} for images {image_shape}")
            what = f"sampler {gen.sampler}"
            for kind in {"ddpm", gen.sampler}:  # training adds noise with DDPM's schedule
                for n in steps:
                    _scheduler(gen, kind).set_timesteps(n)
            for arch in archs:
                what = f"classifier (arch {arch}, width {clf.width}, feature_dim {clf.feature_dim})"
                net = build_classifier(dataclasses.replace(clf, arch=arch), c, num_classes).train()
                logits = net(x)  # train mode: BatchNorm needs the batch of two
                if logits.shape != (2, num_classes):
                    raise ValueError(f"it gives logits of shape {tuple(logits.shape)}")
        except UserError:
            raise
        except (RuntimeError, ValueError, TypeError) as exc:  # incl. out of memory
            reason = " ".join(str(exc).split())[:200]
            raise UserError(f"{what} does not work on {c}x{h}x{w} images with {num_classes} classes: {reason}; "
                            "change these settings") from None


def check_run(config, run_dir: str | os.PathLike, image_shape: tuple[int, int, int], num_classes: int) -> None:
    """Everything a study checks after loading its data and before writing anything."""
    check_output_dir(run_dir)
    check_components(config, image_shape, num_classes)


SYSTEM_TREES = ("/proc", "/sys", "/dev")  # kernel interfaces and devices: never a log file


def check_log_file(log: str | os.PathLike, run_dir: str | os.PathLike) -> Path:
    """`--log-json`: a regular file (or none yet) in a writable folder, outside the run
    folder and outside /proc, /sys and /dev; creates nothing. The log is created at the
    first event, so this is what stops /dev/full, the run folder itself, RUN/results.csv,
    a folder or a FIFO before anything is written."""
    path = Path(log)
    where = f"--log-json {log}"
    try:
        resolved = path.resolve()
        run = Path(run_dir).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise UserError(f"{where}: cannot resolve the path ({exc}); name a plain file") from None
    if resolved == run or run in resolved.parents:
        raise UserError(f"{where} is inside the run folder {run_dir}, which the run writes itself; "
                        "name a file outside it")
    if any(resolved == Path(t) or Path(t) in resolved.parents for t in SYSTEM_TREES):
        raise UserError(f"{where} is under {resolved.parts[1] and '/' + resolved.parts[1]}, a system folder; "
                        "name a regular file elsewhere")
    if resolved.exists() and not resolved.is_file():
        kind = "a folder" if resolved.is_dir() else "not a regular file"
        raise UserError(f"{where} is {kind}; name a regular file in an existing folder")
    if not resolved.parent.is_dir():
        raise UserError(f"{where} must name a file in an existing folder; {path.parent} is not one")
    if resolved.exists() and not os.access(resolved, os.W_OK):
        raise UserError(f"{where} is not writable; fix its permissions or name another file")
    try:
        _probe(resolved.parent, resolved)
    except UserError as exc:
        raise UserError(f"{where}: {exc}".replace("choose another --out", "name another file")) from None
    return resolved
