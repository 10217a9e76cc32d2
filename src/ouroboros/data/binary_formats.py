"""Binary dataset formats: MNIST-format IDX files and CIFAR-10 binary batches (never the
pickled Python version). Headers are checked against the data really there before
anything is allocated; a corrupt or hostile file is one `UserError`."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ouroboros.data.imageset import ImageSet, check_class_names, check_fits_in_memory, printable
from ouroboros.errors import UserError
from ouroboros.io import open_bounded, read_bytes_bounded

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# -- MNIST-format IDX ---------------------------------------------------------------

IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "16-bit integer", 0x0C: "32-bit integer",
             0x0D: "float32", 0x0E: "float64"}


def _read_exact(f, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise UserError(f"{path} is truncated: it ends inside its {what}")
    return data


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An unsigned-byte IDX file, its header checked before its body is read.

    The header declares the shape and the body must hold exactly that many bytes. A
    .gz file is decompressed only up to that size plus one byte, so a tiny file that
    expands to gigabytes (a gzip bomb) costs no more than its header promised, and a
    header promising more than this machine's memory is refused before reading."""
    gz = path.suffix == ".gz"
    try:
        with open_bounded(path, "IDX file", "data") as raw, (gzip.open(raw, "rb") if gz else raw) as f:
            magic = _read_exact(f, 4, path, "magic number")
            if magic[:2] == b"\x1f\x8b":
                raise UserError(f"{path} is gzip-compressed but not named .gz; rename it to {path.name}.gz")
            if magic[:2] != b"\0\0":
                raise UserError(f"{path} is not an IDX file (bad magic number {magic.hex()}; expected 0000 08 0N)")
            if magic[2] != 0x08:
                kind = IDX_TYPES.get(magic[2], f"unknown type 0x{magic[2]:02x}")
                raise UserError(f"{path} holds {kind} elements; only unsigned-byte IDX files "
                                "(type 0x08, as MNIST) are read")
            if magic[3] != expected_dims:
                raise UserError(f"{path} has {magic[3]} dimensions; expected {expected_dims} "
                                f"({'N x H x W images' if expected_dims == 3 else 'N labels'})")
            shape = struct.unpack(f">{expected_dims}I", _read_exact(f, 4 * expected_dims, path, "header"))
            nbytes = math.prod(shape)  # a Python int: a huge header cannot overflow
            check_fits_in_memory(nbytes, str(path))
            chunks, got = [], 0
            while got < nbytes:  # in chunks: memory follows the data really there, up to what the header promised
                chunk = f.read(min(nbytes - got, 1 << 24))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            if got < nbytes:
                raise UserError(f"{path} is truncated: header says {shape}, found {got} bytes of data")
            if f.read(1):  # also makes gzip check its CRC and length trailer
                raise UserError(f"{path} holds more data than its header's shape {shape}; the header is corrupt")
    except UserError:
        raise
    except (OSError, EOFError, zlib.error) as exc:  # missing or unreadable file, bad gzip stream or CRC
        raise UserError(f"cannot read IDX file {path}: {exc.__class__.__name__}: {printable(exc)}") from None
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(shape)


def load_idx(spec: str) -> ImageSet:
    if "," in spec:
        img_path, lbl_path = (Path(p) for p in spec.split(",", 1))
    else:
        folder = Path(spec)
        if not folder.is_dir():
            raise UserError(f"IDX folder not found: {folder}")
        imgs = sorted(folder.glob("*images*idx3-ubyte*"))
        lbls = sorted(folder.glob("*labels*idx1-ubyte*"))
        if len(imgs) != 1 or len(lbls) != 1:
            raise UserError(
                f"{folder} must hold exactly one '*images-idx3-ubyte' and one '*labels-idx1-ubyte' file; "
                f"found {len(imgs)} and {len(lbls)} (name the pair as idx:IMAGES,LABELS)"
            )
        img_path, lbl_path = imgs[0], lbls[0]
    images = _read_idx(img_path, 3)
    if 0 in images.shape:
        raise UserError(f"{img_path} holds {images.shape[0]} images of {images.shape[1]} x {images.shape[2]} pixels; "
                        "it needs at least one image of at least one pixel")
    labels = _read_idx(lbl_path, 1).astype(np.int64)
    if len(images) != len(labels):
        raise UserError(f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels")
    num_classes = max(int(labels.max()) + 1, 2)
    return ImageSet.create(images[:, None], labels, [str(i) for i in range(num_classes)],
                           source=f"real:{printable(img_path.stem)}")


# -- CIFAR-10 binary ----------------------------------------------------------------


def _cifar10_class_names(meta: Path) -> tuple[str, ...]:
    """The names in ``batches.meta.txt`` (one a line, UTF-8), or the standard ten."""
    if not meta.exists():
        return CIFAR10_CLASSES
    try:
        text = read_bytes_bounded(meta, "CIFAR-10 class list", "text").decode("utf-8-sig")  # a BOM is harmless
    except OSError as exc:
        raise UserError(f"cannot read {meta}: {printable(exc)}") from None
    except UnicodeDecodeError:
        raise UserError(f"{meta} is not UTF-8 text; save it as UTF-8 (one class name a line) "
                        "or remove it to use the standard CIFAR-10 names") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != 10:
        raise UserError(f"{meta} lists {len(names)} class names; CIFAR-10 has 10 (one a line): "
                        "fix it or remove it to use the standard names")
    return check_class_names(names, str(meta))  # UTF-16 without a byte-order mark decodes to NULs: refused here


def load_cifar10(spec: str) -> ImageSet:
    path = Path(spec)
    try:
        if path.is_dir():
            files = sorted(path.glob("data_batch_*.bin")) + sorted(path.glob("test_batch.bin"))
            if not files:
                files = sorted(path.glob("*.bin"))
        elif path.exists():  # not a folder: one batch (a FIFO or device is refused when opened)
            files = [path]
        else:
            raise UserError(f"CIFAR-10 path not found: {path}")
        if not files:
            raise UserError(f"no CIFAR-10 binary batches (*.bin) in {path}; the pickled 'python' version is not read")
        record = 1 + 3 * 32 * 32
        chunks = []
        for f in files:
            with open_bounded(f, "CIFAR-10 batch", "data") as fh:
                check_fits_in_memory(os.fstat(fh.fileno()).st_size, str(f))
                raw = np.fromfile(fh, dtype=np.uint8)  # the file's real size: nothing to over-allocate
            if raw.size == 0 or raw.size % record:
                raise UserError(f"{f} is not a CIFAR-10 binary batch (size {raw.size} is not a multiple of {record})")
            rows = raw.reshape(-1, record)
            if rows[:, 0].max() >= 10:
                bad = int(np.argmax(rows[:, 0] >= 10))
                raise UserError(f"{f}: record {bad} has label {rows[bad, 0]}, outside 0..9; this is not a CIFAR-10 "
                                "binary batch (CIFAR-100 batches hold two label bytes per record)")
            chunks.append(rows)
    except OSError as exc:
        raise UserError(f"cannot read CIFAR-10 batches at {path}: {printable(exc)}") from None
    rows = np.concatenate(chunks)
    names = _cifar10_class_names((path if path.is_dir() else path.parent) / "batches.meta.txt")
    images = rows[:, 1:].reshape(-1, 3, 32, 32)
    return ImageSet.create(images, rows[:, 0].astype(np.int64), names, source="real:cifar10")
