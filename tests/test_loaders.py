import gzip
import json
import os
import pathlib
import re
import struct
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from ouroboros import cli
from ouroboros.data.loaders import _to_uint8, load_dataset, load_digits
from ouroboros.errors import UserError

from conftest import assert_user_error, run_cli

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def test_digits_are_embedded_uint8():
    d = load_digits()
    assert len(d) == 1797 and d.shape == (1, 8, 8) and d.images.dtype == np.uint8
    assert d.images.max() == 255 and d.images.min() == 0
    assert d.class_names == tuple(str(i) for i in range(10))
    assert set(d.source) == {"real:digits"} and set(d.generation) == {0}
    assert load_dataset("digits").content_hash() == d.content_hash()


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", images, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labels, gz)
    s = load_dataset(f"idx:{tmp_path}")
    np.testing.assert_array_equal(s.images[:, 0], images)
    assert s.labels.tolist() == labels.tolist() and s.num_classes == 10
    assert load_dataset(str(tmp_path)).content_hash() == s.content_hash()  # detected from the folder


def test_idx_truncated_is_a_user_error(tmp_path):
    images = np.zeros((4, 5, 5), np.uint8)
    _write_idx(tmp_path / "x-images-idx3-ubyte", images)
    _write_idx(tmp_path / "x-labels-idx1-ubyte", np.zeros(4, np.uint8))
    raw = (tmp_path / "x-images-idx3-ubyte").read_bytes()
    (tmp_path / "x-images-idx3-ubyte").write_bytes(raw[:-3])
    with pytest.raises(UserError, match="truncated"):
        load_dataset(f"idx:{tmp_path}")


def test_cifar10_binary(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.array([3, 1, 9, 0, 5], np.uint8)
    pixels = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    rows = np.concatenate([labels[:, None], pixels.reshape(5, -1)], axis=1)
    rows[:3].tofile(tmp_path / "data_batch_1.bin")
    rows[3:].tofile(tmp_path / "test_batch.bin")
    s = load_dataset(f"cifar10:{tmp_path}")
    np.testing.assert_array_equal(s.images, pixels)
    assert s.labels.tolist() == labels.tolist()
    assert s.class_names[3] == "cat"
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not a CIFAR-10 binary batch"):
        load_dataset(f"cifar10:{tmp_path / 'bad.bin'}")


def _write_folder(root, classes, size=(6, 6), mode="L", per_class=3):
    rng = np.random.default_rng(2)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = size[::-1] + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")


def test_imagefolder_grey_and_rgb(tmp_path):
    _write_folder(tmp_path / "g", ["cat", "dog"])
    s = load_dataset(f"imagefolder:{tmp_path / 'g'}")
    assert s.shape == (1, 6, 6) and s.class_names == ("cat", "dog") and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    saved = np.asarray(Image.open(tmp_path / "g" / "dog" / "1.png"))
    np.testing.assert_array_equal(s.images[4, 0], saved)
    _write_folder(tmp_path / "c", ["a", "b", "c"], mode="RGB", size=(5, 4))
    s = load_dataset(str(tmp_path / "c"))
    assert s.shape == (3, 4, 5) and s.num_classes == 3


def test_imagefolder_needs_two_classes(tmp_path):
    _write_folder(tmp_path, ["only"])
    with pytest.raises(UserError, match="at least 2"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_imagefolder_corrupt_png_names_the_file(tmp_path):
    _write_folder(tmp_path, ["a", "b"])
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(UserError, match="broken.png"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_imagefolder_mixed_sizes(tmp_path):
    _write_folder(tmp_path, ["a", "b"])
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "a" / "big.png")
    with pytest.raises(UserError, match="different sizes"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_missing_dataset(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_dataset(str(tmp_path / "nope"))


# -- hostile or corrupt files: one UserError each, never a crash -------------------------------


def _mix(capsys, spec, out):
    """`ouroboros mix` on SPEC in-process; returns (exit code, stderr lines)."""
    code = cli.main(["mix", "--real", spec, "--ratio", "1", "--mode", "subsample", "--out", str(out)])
    err = capsys.readouterr().err
    err.encode("utf-8")  # printable: a strict UTF-8 terminal can show it
    return code, [line for line in err.splitlines() if line.strip()]


def _idx_pair(tmp_path, images_raw, gz=False, n_labels=2):
    """Write IMAGES_RAW as the images file next to a valid labels file; returns the spec."""
    sfx = ".gz" if gz else ""
    img = tmp_path / f"t-images-idx3-ubyte{sfx}"
    (gzip.open if gz else open)(img, "wb").write(images_raw)
    _write_idx(tmp_path / "t-labels-idx1-ubyte", np.arange(n_labels) % 2)
    return f"idx:{img},{tmp_path / 't-labels-idx1-ubyte'}"


def _idx_header(dims, code=0x08):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_with_huge_sizes_is_refused_without_allocating(tmp_path, gz):
    spec = _idx_pair(tmp_path, _idx_header((2**32 - 1, 2**32 - 1, 2**32 - 1)) + bytes(100), gz=gz)
    with pytest.raises(UserError, match="more than this machine's memory"):
        load_dataset(spec)
    # 1 GB promised, 100 bytes there: found out without allocating the gigabyte
    spec = _idx_pair(tmp_path, _idx_header((1000, 1000, 1000)) + bytes(100), gz=gz)
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=r"truncated: header says \(1000, 1000, 1000\), found 100 bytes"):
            load_dataset(spec)
        assert tracemalloc.get_traced_memory()[1] < 2**26
    finally:
        tracemalloc.stop()


def test_idx_header_beyond_memory_is_refused_before_reading(tmp_path, monkeypatch):
    spec = _idx_pair(tmp_path, _idx_header((2, 3, 3)) + bytes(18), gz=True)
    assert load_dataset(spec).shape == (1, 3, 3)
    monkeypatch.setattr("os.sysconf", lambda name: 4)  # 16 bytes of memory
    with pytest.raises(UserError, match="more than this machine's memory"):
        load_dataset(spec)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_body_longer_than_its_header_is_refused(tmp_path, gz):
    spec = _idx_pair(tmp_path, _idx_header((2, 3, 3)) + bytes(19), gz=gz)
    with pytest.raises(UserError, match="more data than its header"):
        load_dataset(spec)


@pytest.mark.parametrize("raw, fragment", [
    (_idx_header((2, 3, 3), code=0x0D) + bytes(18), "float32 elements"),
    (_idx_header((2, 3, 3), code=0x07) + bytes(18), "unknown type 0x07"),
    (_idx_header((2, 9)) + bytes(18), "2 dimensions; expected 3"),
    (b"\x01\x02\x08\x03" + bytes(18), "bad magic number"),
    (b"\x00\x00", "ends inside its magic number"),
    (_idx_header((2, 3, 3))[:9], "ends inside its header"),
    (_idx_header((0, 3, 3)), "at least one image"),
    (_idx_header((2, 0, 0)), "at least one pixel"),
])
def test_idx_bad_headers(tmp_path, raw, fragment):
    with pytest.raises(UserError, match=fragment):
        load_dataset(_idx_pair(tmp_path, raw))


def test_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(_idx_header((2, 3, 3)) + bytes(range(18)))
    bad_crc = bytearray(good)
    bad_crc[-6] ^= 0xFF  # inside the CRC-32 trailer: the data decompresses fine, the check fails
    cases = {"bad CRC": bytes(bad_crc), "truncated": good[:-12], "not gzip": _idx_header((2, 3, 3)) + bytes(18),
             "empty": b""}
    for case, raw in cases.items():
        img = tmp_path / "t-images-idx3-ubyte.gz"
        img.write_bytes(raw)
        _write_idx(tmp_path / "t-labels-idx1-ubyte", np.arange(2))
        with pytest.raises(UserError, match="cannot read IDX file|truncated") as info:
            load_dataset(f"idx:{img},{tmp_path / 't-labels-idx1-ubyte'}")
        assert "t-images-idx3-ubyte.gz" in str(info.value), case
    img.write_bytes(good)
    assert load_dataset(f"idx:{img},{tmp_path / 't-labels-idx1-ubyte'}").images.sum() == sum(range(18))
    plain = tmp_path / "t-images-idx3-ubyte"
    plain.write_bytes(good)
    with pytest.raises(UserError, match="gzip-compressed but not named .gz"):
        load_dataset(f"idx:{plain},{tmp_path / 't-labels-idx1-ubyte'}")


def test_idx_gzip_bomb_is_not_decompressed(tmp_path, monkeypatch):
    # 50 MB of zeros after a header promising 2 x 28 x 28 bytes: a 50 kB file.
    body = _idx_header((2, 28, 28)) + bytes(50 * 2**20)
    img = tmp_path / "t-images-idx3-ubyte.gz"
    img.write_bytes(gzip.compress(body, compresslevel=9))
    _write_idx(tmp_path / "t-labels-idx1-ubyte", np.arange(2))
    decompressed = []
    real_read = gzip._GzipReader.read
    monkeypatch.setattr(gzip._GzipReader, "read", lambda self, size=-1: decompressed.append(real_read(self, size))
                        or decompressed[-1])
    with pytest.raises(UserError, match="more data than its header"):
        load_dataset(f"idx:{img},{tmp_path / 't-labels-idx1-ubyte'}")
    assert sum(map(len, decompressed)) < 2**20  # what the header promised plus a buffer, not 50 MB


def _cifar(tmp_path, labels=(3, 1, 9)):
    rows = np.zeros((len(labels), 1 + 3072), np.uint8)
    rows[:, 0] = labels
    rows.tofile(tmp_path / "data_batch_1.bin")
    return f"cifar10:{tmp_path}"


@pytest.mark.parametrize("raw, fragment", [
    ("\n".join(["caf\xe9"] + list("abcdefghi")).encode("latin-1"), "not UTF-8"),
    ("\n".join("abcdefghij").encode("utf-16"), "not UTF-8"),  # with a byte-order mark
    ("\n".join("abcdefghij").encode("utf-16-le"), "control characters"),  # without: NULs between letters
    ("\n".join("abcdefghi").encode(), "lists 9 class names"),
    ("\n".join("abcdefghijk").encode(), "lists 11 class names"),
    ("\n".join("abcdefghia").encode(), "distinct"),
])
def test_cifar10_bad_meta_is_refused(tmp_path, raw, fragment):
    spec = _cifar(tmp_path)
    (tmp_path / "batches.meta.txt").write_bytes(raw)
    with pytest.raises(UserError, match=fragment) as info:
        load_dataset(spec)
    assert "batches.meta.txt" in str(info.value)  # names the file to fix


def test_cifar10_meta_in_utf8_with_bom_names_the_classes(tmp_path):
    spec = _cifar(tmp_path)
    names = ["café", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    (tmp_path / "batches.meta.txt").write_bytes("\n".join(names + ["", ""]).encode("utf-8-sig"))
    assert load_dataset(spec).class_names == tuple(names)


def test_cifar10_labels_out_of_range(tmp_path):
    spec = _cifar(tmp_path, labels=(3, 10, 2))
    with pytest.raises(UserError, match="record 1 has label 10, outside 0..9"):
        load_dataset(spec)


def _png(width, height, bitdepth=8, colour=0, idat=b""):
    """A PNG whose header says what we like, whatever the data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bitdepth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(idat)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side, fragment", [(30000, "DecompressionBombError"), (10000, "DecompressionBombWarning")])
def test_imagefolder_decompression_bomb_is_one_error_line(tmp_path, capsys, side, fragment):
    _write_folder(tmp_path, ["a", "b"])
    (tmp_path / "b" / "bomb.png").write_bytes(_png(side, side))
    code, lines = _mix(capsys, f"imagefolder:{tmp_path}", tmp_path / "out.npz")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert fragment in lines[0] and "bomb.png" in lines[0]
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.skipif(AS_ROOT, reason="root reads files whatever their permissions")
@pytest.mark.parametrize("target", ["folder", "file", "root"])
def test_imagefolder_unreadable(tmp_path, target):
    _write_folder(tmp_path / "r", ["a", "b"])
    path = {"folder": tmp_path / "r" / "b", "file": tmp_path / "r" / "b" / "1.png", "root": tmp_path / "r"}[target]
    path.chmod(0)
    try:
        with pytest.raises(UserError, match="cannot"):
            load_dataset(f"imagefolder:{tmp_path / 'r'}")
    finally:
        path.chmod(0o755)


@pytest.mark.parametrize("target", ["folder", "file", "root"])
def test_imagefolder_permission_denied_simulated(tmp_path, monkeypatch, target):
    # The chmod test above cannot run as root; here the OS's refusal is simulated.
    import builtins

    _write_folder(tmp_path / "r", ["a", "b"])
    denied = {"folder": tmp_path / "r" / "b", "file": tmp_path / "r" / "b" / "1.png", "root": tmp_path / "r"}[target]
    real_iterdir, real_open = pathlib.Path.iterdir, builtins.open

    def iterdir(self):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    def open_(file, *args, **kwargs):
        if isinstance(file, (str, pathlib.Path)) and pathlib.Path(file) == denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def os_open(file, *args, **kwargs):  # images are opened with os.open (io.open_bounded)
        if isinstance(file, (str, pathlib.Path)) and pathlib.Path(file) == denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_os_open(file, *args, **kwargs)

    real_os_open = os.open
    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    with pytest.raises(UserError, match="cannot .*Permission denied"):
        load_dataset(f"imagefolder:{tmp_path / 'r'}")


def test_imagefolder_tiny_images(tmp_path):
    _write_folder(tmp_path / "one", ["a", "b"], size=(1, 1))
    s = load_dataset(f"imagefolder:{tmp_path / 'one'}")  # 1 x 1 is a valid image: loaded as it is
    assert s.shape == (1, 1, 1) and len(s) == 6
    _write_folder(tmp_path / "zero", ["a", "b"])
    (tmp_path / "zero" / "a" / "empty.png").write_bytes(_png(0, 0))
    with pytest.raises(UserError, match="empty.png"):
        load_dataset(f"imagefolder:{tmp_path / 'zero'}")


def test_imagefolder_16_bit_grey_is_scaled_not_clipped(tmp_path):
    # 0..65535 -> 0..255 as round(v * 255 / 65535) = round(v / 257): 257k + 128 rounds down, 257k + 129 up
    values = np.array([0, 128, 129, 256, 257, 385, 386, 32767, 32768, 65149, 65150, 65535], np.uint16)
    gradient = np.concatenate([values, np.arange(0, 65536, 257).astype(np.uint16)])[None, :]
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(gradient).save(tmp_path / c / "g.png")
    assert Image.open(tmp_path / "a" / "g.png").mode.startswith("I")  # really a 16-bit file
    s = load_dataset(f"imagefolder:{tmp_path}")
    expected = (gradient.astype(np.int64) * 255 + 32767) // 65535
    np.testing.assert_array_equal(s.images[0, 0], expected)
    assert expected[0, :12].tolist() == [0, 0, 1, 1, 1, 1, 2, 127, 128, 253, 254, 255]


def test_32_bit_integer_pixels_outside_16_bits_are_refused():
    assert _to_uint8(Image.fromarray(np.array([[0, 65535]], np.int32))).tolist() == [[0, 255]]
    with pytest.raises(UserError, match="outside 16-bit"):
        _to_uint8(Image.fromarray(np.array([[0, 70000]], np.int32)))


def test_imagefolder_palette_alpha_and_mixed_modes(tmp_path):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    alpha = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    index = rng.integers(0, 4, (4, 4), dtype=np.uint8)
    palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a" / "0-rgba.png")
    Image.fromarray(np.dstack([grey, alpha])).save(tmp_path / "a" / "1-la.png")
    Image.fromarray(grey).save(tmp_path / "a" / "2-l.png")
    p = Image.frombytes("P", (4, 4), index.tobytes())
    p.putpalette(palette.ravel().tolist())
    p.save(tmp_path / "b" / "0-p.png")
    p.save(tmp_path / "b" / "1-ptrns.png", transparency=bytes([0, 128, 255, 255]))  # transparency as bytes
    Image.fromarray(rgb).save(tmp_path / "b" / "2-rgb.bmp")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak out of the loader either
        s = load_dataset(f"imagefolder:{tmp_path}")
    assert s.shape == (3, 4, 4) and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    hwc = s.images.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(hwc[0], rgb)  # alpha dropped, colour kept
    np.testing.assert_array_equal(hwc[1], np.dstack([grey] * 3))  # grey + alpha -> grey -> RGB
    np.testing.assert_array_equal(hwc[2], np.dstack([grey] * 3))
    np.testing.assert_array_equal(hwc[3], palette[index])  # palette looked up
    np.testing.assert_array_equal(hwc[4], palette[index])
    np.testing.assert_array_equal(hwc[5], rgb)
    # the same grey files alone load as one channel
    for name in ("0-rgba.png", "0-p.png", "1-ptrns.png", "2-rgb.bmp"):
        (tmp_path / ("a" if name == "0-rgba.png" else "b") / name).unlink()
    Image.fromarray(grey).save(tmp_path / "b" / "0-l.png")
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert s.shape == (1, 4, 4)
    np.testing.assert_array_equal(s.images[0, 0], grey)


def test_imagefolder_other_formats_under_image_names_are_refused(tmp_path):
    _write_folder(tmp_path, ["a", "b"])
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "a" / "x.png", format="GIF")
    with pytest.raises(UserError, match="x.png"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_imagefolder_class_folder_not_utf8_is_one_error_line(tmp_path, capsys):
    _write_folder(tmp_path, ["a", "b"])
    os.mkdir(os.path.join(os.fsencode(tmp_path), b"\xff\xfe"))
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(os.path.join(os.fsencode(tmp_path), b"\xff\xfe", b"0.png"))
    code, lines = _mix(capsys, f"imagefolder:{tmp_path}", tmp_path / "out.npz")
    assert code == 2 and len(lines) == 1 and "not UTF-8" in lines[0], lines
    assert not (tmp_path / "out.npz").exists()


def test_imagefolder_root_not_utf8_loads_and_saves(tmp_path, capsys):
    root = os.path.join(os.fsencode(tmp_path), b"data-\xff")
    os.mkdir(root)
    _write_folder(tmp_path / os.fsdecode(root), ["a", "b"])
    # file names are not kept, so one that is not UTF-8 is just another image
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(os.path.join(root, b"a", b"\xfe.png"))
    code, lines = _mix(capsys, f"imagefolder:{os.fsdecode(root)}", tmp_path / "out.npz")
    assert code == 0 and not lines
    from ouroboros.data.imageset import ImageSet

    back = ImageSet.load(tmp_path / "out.npz")
    text = json.dumps({"classes": list(back.class_names), "source": sorted(set(back.source))}, ensure_ascii=False)
    text.encode("utf-8")  # what results files and reports would write
    assert back.source[0] == "real:data-\\udcff" and len(back) == 7


@pytest.mark.parametrize("name", ["b\nc", "tab\there"])
def test_imagefolder_class_folder_with_control_characters(tmp_path, name):
    _write_folder(tmp_path, ["a", name])
    with pytest.raises(UserError, match=f"ImageFolder {re.escape(str(tmp_path))}: class name .* control characters"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_bad_file_with_an_unprintable_name_is_still_one_printable_line(tmp_path, capsys):
    _write_folder(tmp_path, ["a", "b"])
    name = os.path.join(os.fsencode(tmp_path), b"a", b"x\n\xff.png")
    with open(name, "wb") as f:
        f.write(b"not an image")
    code, lines = _mix(capsys, f"imagefolder:{tmp_path}", tmp_path / "out.npz")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "x\\n\\udcff.png" in lines[0]  # shown escaped


def test_imagefolder_skips_hidden_entries(tmp_path):
    _write_folder(tmp_path, ["a", "b"])
    (tmp_path / ".git").mkdir()  # not a class
    (tmp_path / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble junk, not an image
    (tmp_path / "b" / ".cache").mkdir()
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert s.class_names == ("a", "b") and len(s) == 6


def test_imagefolder_empty_class_and_folders_in_classes(tmp_path):
    _write_folder(tmp_path, ["a", "b"])
    (tmp_path / "c").mkdir()
    with pytest.raises(UserError, match="has no images"):
        load_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "c").rmdir()
    (tmp_path / "b" / "x.png").mkdir()  # a folder that looks like an image
    with pytest.raises(UserError, match="x.png is a folder"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_cli_contract_for_corrupt_files(tmp_path):
    # Real processes: exit code 2, one 'error:' line, no traceback, nothing written.
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04" + bytes(40))
    proc = run_cli("mix", "--real", tmp_path / "trunc.npz", "--ratio", "1", "--mode", "subsample",
                   "--out", tmp_path / "out.npz")
    assert_user_error(proc, "not a readable")
    body = _idx_header((2, 28, 28)) + bytes(2**20)
    (tmp_path / "t-images-idx3-ubyte.gz").write_bytes(gzip.compress(body))
    _write_idx(tmp_path / "t-labels-idx1-ubyte", np.arange(2))
    proc = run_cli("mix", "--real", f"idx:{tmp_path}", "--ratio", "1", "--mode", "subsample",
                   "--out", tmp_path / "out.npz")
    assert_user_error(proc, "more data than its header")
    assert not (tmp_path / "out.npz").exists()
