"""Property-based: corrupt files for every loader never crash `ouroboros mix`.

Each example writes a damaged variant of a valid dataset (random bytes, truncations,
bit flips, overwritten runs, random headers) and runs `ouroboros mix` in-process on it.
The contract: exit 0 with the output written (the damage left a loadable dataset), or
exit 2 with exactly one `error:` line and nothing written. Any other exception, a
second line, or a warning escaping the loader fails the test. For images there is an
oracle too: whatever Pillow decodes cleanly must load. (`--ratio 1`, because a ratio
of 0 keeps no images and is refused whatever the data.)
"""

import gzip
import io
import json
import struct
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ouroboros import cli
from ouroboros.data.imageset import ImageSet

FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_contract(capsys, spec: str, folder: Path) -> int:
    out = folder / "out" / "mixed.npz"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.main(["mix", "--real", spec, "--ratio", "1", "--mode", "subsample", "--out", str(out)])
    captured = capsys.readouterr()
    captured.err.encode("utf-8")  # printable on a strict UTF-8 terminal
    lines = [line for line in captured.err.splitlines() if line.strip()]
    leaked = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert not leaked, [str(w.message) for w in leaked]
    if code == 0:
        assert not lines and out.is_file()
    else:
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, lines)
        assert not out.parent.exists() or not any(out.parent.iterdir()), "an error left files behind"
    return code


# -- damage to any valid file ----------------------------------------------------------------


def damaged(valid: bytes):
    """Random bytes, a truncation, bit flips, or a run of bytes overwritten."""
    n = len(valid)

    def flip(flips):
        raw = bytearray(valid)
        for pos, bit in flips:
            raw[pos] ^= 1 << bit
        return bytes(raw)

    def overwrite(args):
        pos, junk = args
        return valid[:pos] + junk + valid[pos + len(junk):]

    return st.one_of(
        st.binary(max_size=400),
        st.integers(0, n - 1).map(lambda k: valid[:k]),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 7)), min_size=1, max_size=6).map(flip),
        st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=12)).map(overwrite),
    )


def _valid_set() -> ImageSet:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8)
    return ImageSet.create(images, [0, 1, 0, 1, 0, 1], ["a", "b"], source="real:fuzz")


def _npz_bytes(arrays: dict, replace: dict | None = None) -> bytes:
    """An .npz of ARRAYS, with some members' raw .npy bytes replaced."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.save(member, arr)
            zf.writestr(f"{name}.npy", (replace or {}).get(name, member.getvalue()))
    return buf.getvalue()


def _valid_arrays() -> dict:
    s = _valid_set()
    meta = {"format": "ouroboros.ImageSet", "version": 1, "class_names": list(s.class_names)}
    return {"images": s.images, "labels": s.labels, "source": s.source, "generation": s.generation,
            "seed": s.seed, "condition": s.condition, "metadata": np.array(json.dumps(meta))}


VALID_NPZ = _npz_bytes(_valid_arrays())
_buf = io.BytesIO()
np.savez_compressed(_buf, **_valid_arrays())
VALID_NPZ_DEFLATED = _buf.getvalue()  # not what ImageSet.save writes, but a user's tool might

# -- random headers --------------------------------------------------------------------------

small_or_huge = st.one_of(st.integers(0, 12), st.integers(0, 2**40))


@st.composite
def random_npy(draw):
    """A .npy member whose header declares any dtype and shape, followed by any body."""
    descr = draw(st.sampled_from(["|u1", "<i8", "<f4", "|O", "<U4", "|b1", ">i2", "|V3", "<u8", "<c16"]))
    # any shape, or one of tens of gigabytes to terabytes: more than memory, less than numpy's own limit
    shape = tuple(draw(st.one_of(st.lists(small_or_huge, max_size=5), st.tuples(st.integers(2**36, 2**45)))))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": draw(st.booleans()),
                                                  "shape": shape})
    body = draw(st.one_of(st.binary(max_size=64), st.just(b"\0" * 96)))
    return header.getvalue() + body


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=3),
                           max_leaves=8)


@st.composite
def random_npz(draw):
    arrays = _valid_arrays()
    choice = draw(st.sampled_from(["member", "metadata", "labels", "class_names"]))
    if choice == "member":
        return _npz_bytes(arrays, {draw(st.sampled_from(list(arrays))): draw(random_npy())})
    if choice == "metadata":
        arrays["metadata"] = np.array(json.dumps(draw(json_values)))
    elif choice == "labels":
        arrays["labels"] = np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=6, max_size=6)))
    else:
        names = draw(st.lists(st.text(max_size=4), max_size=4))
        arrays["metadata"] = np.array(json.dumps({"format": "ouroboros.ImageSet", "version": 1, "class_names": names}))
    return _npz_bytes(arrays)


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


VALID_IDX_IMAGES = _idx(np.arange(6 * 4 * 4, dtype=np.uint8).reshape(6, 4, 4))
VALID_IDX_LABELS = _idx(np.array([0, 1, 0, 1, 0, 1], np.uint8))


@st.composite
def random_idx(draw):
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0D, 0x00, 0xFF]))
    dims = draw(st.lists(small_or_huge.filter(lambda d: d < 2**32), max_size=4))
    header = bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return header + draw(st.binary(max_size=200))


# -- the tests -------------------------------------------------------------------------------


def _check_npz(capsys, raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "set.npz"
        path.write_bytes(raw)
        assert_contract(capsys, str(path), Path(tmp))


@FUZZ
@given(raw=st.one_of(damaged(VALID_NPZ), damaged(VALID_NPZ_DEFLATED)))
def test_npz_fuzz(capsys, raw):
    _check_npz(capsys, raw)


@FUZZ
@given(raw=random_npz())
def test_npz_random_contents_fuzz(capsys, raw):
    _check_npz(capsys, raw)


def _check_idx(capsys, which: str, gz: bool, raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mnist"
        folder.mkdir()
        files = {"images": VALID_IDX_IMAGES, "labels": VALID_IDX_LABELS, which: raw}
        for name, data in files.items():
            path = folder / f"t-{name}-idx{3 if name == 'images' else 1}-ubyte"
            if gz:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
            else:
                path.write_bytes(data)
        assert_contract(capsys, f"idx:{folder}", Path(tmp))


@FUZZ
@given(which=st.sampled_from(["images", "labels"]), gz=st.booleans(),
       raw=st.one_of(damaged(VALID_IDX_IMAGES), damaged(VALID_IDX_LABELS)))
def test_idx_fuzz(capsys, which, gz, raw):
    _check_idx(capsys, which, gz, raw)


@FUZZ
@given(which=st.sampled_from(["images", "labels"]), gz=st.booleans(), raw=random_idx())
def test_idx_random_header_fuzz(capsys, which, gz, raw):
    _check_idx(capsys, which, gz, raw)


@FUZZ
@given(gz_raw=damaged(gzip.compress(VALID_IDX_IMAGES, mtime=0)))
def test_idx_gzip_stream_fuzz(capsys, gz_raw):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mnist"
        folder.mkdir()
        (folder / "t-images-idx3-ubyte.gz").write_bytes(gz_raw)
        (folder / "t-labels-idx1-ubyte").write_bytes(VALID_IDX_LABELS)
        assert_contract(capsys, str(folder), Path(tmp))  # found by content: exercises detection too


CIFAR_RECORD = 1 + 3 * 32 * 32
VALID_CIFAR = np.concatenate([np.array([[3], [7]], np.uint8), np.full((2, 3072), 9, np.uint8)], axis=1).tobytes()
VALID_META = "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])


@FUZZ
@given(part=st.sampled_from(["batch", "meta", "labels"]),
       raw=st.one_of(damaged(VALID_CIFAR), damaged(VALID_META.encode())),
       labels=st.lists(st.integers(0, 255), min_size=1, max_size=3),
       meta_text=st.text(max_size=120))
def test_cifar10_fuzz(capsys, part, raw, labels, meta_text):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cifar"
        folder.mkdir()
        batch, meta = VALID_CIFAR, VALID_META.encode()
        if part == "batch":
            batch = raw
        elif part == "meta":
            meta = raw if len(raw) % 2 else meta_text.encode("utf-8", "surrogatepass")
        else:
            rows = np.zeros((len(labels), CIFAR_RECORD), np.uint8)
            rows[:, 0] = labels
            batch = rows.tobytes()
        (folder / "data_batch_1.bin").write_bytes(batch)
        (folder / "batches.meta.txt").write_bytes(meta)
        assert_contract(capsys, f"cifar10:{folder}", Path(tmp))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_KINDS = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
             (4, 8), (4, 16), (6, 8), (6, 16)]  # (colour type, bit depth) pairs the PNG spec allows


@st.composite
def random_png(draw):
    """A well-formed PNG of any kind with random pixels (exercising every pixel mode), or
    one whose header says anything at all (any size, bit depth, colour type)."""
    if draw(st.booleans()):
        colour, depth = draw(st.sampled_from(PNG_KINDS))
        width, height, interlace = draw(st.integers(1, 12)), draw(st.integers(1, 12)), 0
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
        row = (width * channels * depth + 7) // 8
        pixels = b"".join(bytes([draw(st.integers(0, 4))]) + draw(st.binary(min_size=row, max_size=row))
                          for _ in range(height))  # each row: a filter byte, then the row
    else:
        width, height = draw(small_or_huge.filter(lambda d: d < 2**31)), draw(small_or_huge.filter(lambda d: d < 2**31))
        depth, colour = draw(st.sampled_from([1, 2, 4, 8, 16, 3])), draw(st.sampled_from([0, 2, 3, 4, 6, 5]))
        interlace, pixels = draw(st.sampled_from([0, 1])), draw(st.binary(max_size=300))
    chunks = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
    if colour == 3 or draw(st.booleans()):
        chunks += _png_chunk(b"PLTE", bytes(draw(st.lists(st.integers(0, 255), min_size=3, max_size=48))[:3 * 16]))
    if draw(st.booleans()):
        chunks += _png_chunk(b"tRNS", draw(st.binary(max_size=8)))  # transparency: a colour, or bytes per entry
    chunks += _png_chunk(b"IDAT", zlib.compress(pixels))
    return b"\x89PNG\r\n\x1a\n" + chunks + _png_chunk(b"IEND", b"")


def _image_bytes(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


_pixels = np.random.default_rng(1).integers(0, 256, (5, 5, 3), dtype=np.uint8)
VALID_IMAGES = {".png": _image_bytes(_pixels[:, :, 0], "PNG"), ".jpg": _image_bytes(_pixels, "JPEG"),
                ".bmp": _image_bytes(_pixels, "BMP"),
                ".png16": _image_bytes((_pixels[:, :, 0].astype(np.uint16) * 257), "PNG")}


def pil_decodes(raw: bytes) -> bool:
    """The reference: Pillow decodes the file, in a format the suffixes name, without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            with Image.open(io.BytesIO(raw), formats=["PNG", "JPEG", "BMP"]) as im:
                im.load()
            return True
        except Exception:
            return False


@settings(FUZZ, max_examples=120)  # cheap examples; pixel modes are many
@given(suffix=st.sampled_from(sorted(VALID_IMAGES)), data=st.data())
def test_imagefolder_fuzz(capsys, suffix, data):
    raw = data.draw(random_png() if data.draw(st.booleans()) else damaged(VALID_IMAGES[suffix]))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        for c in ("a", "b"):  # the same file in both classes: sizes and modes always agree
            (root / c).mkdir(parents=True)
            (root / c / f"0{suffix[:4]}").write_bytes(raw)
        code = assert_contract(capsys, f"imagefolder:{root}", Path(tmp))
        if pil_decodes(raw):  # whatever Pillow decodes cleanly, the loader must load (any mode, any size)
            assert code == 0


@pytest.mark.parametrize("suffix", sorted(VALID_IMAGES))
def test_fuzz_baselines_load(capsys, suffix, tmp_path):
    # The undamaged files the fuzzers start from do load: the damage is what fails.
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / f"0{suffix[:4]}").write_bytes(VALID_IMAGES[suffix])
    assert assert_contract(capsys, f"imagefolder:{root}", tmp_path) == 0
    (tmp_path / "set.npz").write_bytes(VALID_NPZ)
    assert assert_contract(capsys, str(tmp_path / "set.npz"), tmp_path / "n") == 0
    (tmp_path / "deflated.npz").write_bytes(VALID_NPZ_DEFLATED)
    assert assert_contract(capsys, str(tmp_path / "deflated.npz"), tmp_path / "d") == 0
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    (mnist / "t-images-idx3-ubyte").write_bytes(VALID_IDX_IMAGES)
    (mnist / "t-labels-idx1-ubyte").write_bytes(VALID_IDX_LABELS)
    assert assert_contract(capsys, f"idx:{mnist}", tmp_path / "i") == 0
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    (cifar / "data_batch_1.bin").write_bytes(VALID_CIFAR)
    (cifar / "batches.meta.txt").write_text(VALID_META)
    assert assert_contract(capsys, f"cifar10:{cifar}", tmp_path / "c") == 0
