import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from ouroboros.data.loaders import load_dataset, load_digits
from ouroboros.errors import UserError


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
