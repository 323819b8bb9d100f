"""Image and mask readers: formats, bit depths, thresholds and error messages."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from anomed.data.io import IMAGE_EXTENSIONS, is_image_file, read_image, read_mask
from anomed.errors import AnomedError


def _save(path: Path, arr: np.ndarray, **kwargs) -> Path:
    Image.fromarray(arr).save(path, **kwargs)
    return path


def test_image_extensions_are_case_insensitive() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)
    assert is_image_file("scan.PNG") and is_image_file(Path("a/b.TiFf"))
    assert not is_image_file("notes.txt") and not is_image_file("png")


def test_grayscale_is_replicated_to_three_channels(tmp_path: Path) -> None:
    arr = np.array([[0, 51], [204, 255]], np.uint8)
    img = read_image(_save(tmp_path / "g.png", arr))
    assert img.shape == (2, 2, 3) and img.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(img[..., c], [[0.0, 0.2], [0.8, 1.0]], atol=1e-6)


def test_rgb_keeps_channel_order(tmp_path: Path) -> None:
    arr = np.zeros((3, 4, 3), np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2] = 255, 102, 0
    img = read_image(_save(tmp_path / "c.png", arr))
    assert img.shape == (3, 4, 3)
    np.testing.assert_allclose(img[0, 0], [1.0, 0.4, 0.0], atol=1e-6)


def test_rgba_drops_alpha_after_compositing_on_black(tmp_path: Path) -> None:
    arr = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [255, 255, 255, 51]]], np.uint8)
    img = read_image(_save(tmp_path / "a.png", arr))
    assert img.shape == (1, 3, 3)
    np.testing.assert_allclose(img[0, 0], np.array([200, 100, 50]) / 255, atol=1e-6)
    np.testing.assert_allclose(img[0, 1], [0, 0, 0])
    np.testing.assert_allclose(img[0, 2], [0.2, 0.2, 0.2], atol=1e-6)  # 255 * 51/255 = 51


def test_palette_image_is_expanded_to_rgb(tmp_path: Path) -> None:
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    np.testing.assert_allclose(img[0], [[0, 0, 0], [1, 0, 0]])


def test_12bit_data_in_16bit_png_uses_its_own_range(tmp_path: Path) -> None:
    arr = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # 12-bit values 0..4095
    img = read_image(_save(tmp_path / "ct.png", arr))
    assert img.shape == (64, 64, 3) and img.max() == 1.0  # not dark (4095/65535 would be 0.06)
    np.testing.assert_allclose(img[..., 0], arr / 4095.0, atol=1e-6)
    assert len(np.unique(img[..., 0])) == 4096  # nothing clipped or merged


def test_16bit_scaling_maps_min_to_zero(tmp_path: Path) -> None:
    arr = np.array([[1000, 2000], [3000, 1500]], np.uint16)
    img = read_image(_save(tmp_path / "w.png", arr))
    np.testing.assert_allclose(img[..., 1], [[0.0, 0.5], [1.0, 0.25]], atol=1e-6)


def test_16bit_grayscale_tiff(tmp_path: Path) -> None:
    arr = np.array([[0, 100], [200, 400]], np.uint16)
    img = read_image(_save(tmp_path / "x.tif", arr))
    np.testing.assert_allclose(img[..., 2], [[0, 0.25], [0.5, 1.0]], atol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16bit_colour_keeps_precision_and_rgb_order(tmp_path: Path, suffix: str) -> None:
    rgb = np.zeros((2, 2, 3), np.uint16)
    rgb[0, 0] = [4000, 0, 1000]
    rgb[1, 1] = [1, 2, 3]  # would all round to 0 if reduced to 8 bits
    path = tmp_path / f"c{suffix}"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    img = read_image(path)
    np.testing.assert_allclose(img[0, 0], [1.0, 0.0, 0.25], atol=1e-6)
    np.testing.assert_allclose(img[1, 1], np.array([1, 2, 3]) / 4000, atol=1e-7)


@pytest.mark.parametrize("name", ["UPPER.PNG", "x.bmp", "x.tif", "x.tiff"])
def test_lossless_formats_round_trip(tmp_path: Path, name: str) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = read_image(_save(tmp_path / name, arr))
    np.testing.assert_allclose(img, arr / 255.0, atol=1e-6)


def test_jpeg_is_read(tmp_path: Path) -> None:
    arr = np.full((16, 16), 128, np.uint8)
    img = read_image(_save(tmp_path / "x.jpg", arr))
    assert img.shape == (16, 16, 3)
    assert abs(float(img.mean()) - 128 / 255) < 0.02


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(AnomedError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_truncated_png_fails_on_read(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _save(tmp_path / "cut.png", arr)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(AnomedError, match=r"cut\.png: not a readable image.*Fix"):
        read_image(path)


def test_text_file_named_png_fails(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("this is not an image")
    with pytest.raises(AnomedError, match=r"fake\.png.*Fix"):
        read_image(path)
    with pytest.raises(AnomedError, match=r"fake\.png"):
        read_mask([path])


def _square(shape=(64, 64)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[16:40, 8:44] = 255
    return mask


def test_jpeg_mask_noise_is_thresholded(tmp_path: Path) -> None:
    truth = _square()
    path = _save(tmp_path / "m.jpg", truth, quality=50)
    raw = np.asarray(Image.open(path))
    assert ((raw > 0) != (truth > 0)).any()  # the file really carries compression noise
    mask = read_mask([path])
    assert mask.dtype == np.bool_ and mask.shape == (64, 64)
    np.testing.assert_array_equal(mask, truth > 0)


def test_mask_threshold_is_above_127_for_8bit(tmp_path: Path) -> None:
    arr = np.array([[0, 127, 128, 255]], np.uint8)
    np.testing.assert_array_equal(read_mask([_save(tmp_path / "m.png", arr)]), [[0, 0, 1, 1]])


def test_16bit_mask_threshold_is_half_the_range(tmp_path: Path) -> None:
    arr = np.array([[0, 30000, 40000, 65535]], np.uint16)
    np.testing.assert_array_equal(read_mask([_save(tmp_path / "m.png", arr)]), [[0, 0, 1, 1]])


def test_png_label_map_with_values_0_1(tmp_path: Path) -> None:
    arr = np.array([[0, 1], [1, 0]], np.uint8)
    np.testing.assert_array_equal(read_mask([_save(tmp_path / "m.png", arr)]), arr > 0)


def test_colour_mask_uses_brightest_channel(tmp_path: Path) -> None:
    arr = np.zeros((2, 2, 3), np.uint8)
    arr[0, 0] = [255, 0, 0]  # pure red: luminance 76 would miss it
    np.testing.assert_array_equal(read_mask([_save(tmp_path / "m.png", arr)]), [[1, 0], [0, 0]])


def test_several_mask_files_are_merged(tmp_path: Path) -> None:
    a, b = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    a[:2], b[-3:] = 255, 255
    mask = read_mask([_save(tmp_path / "x_mask.png", a), _save(tmp_path / "x_mask_1.jpg", b)])
    assert int(mask.sum()) == 5 * 8
    assert mask[:2].all() and mask[-3:].all() and not mask[2:5].any()


def test_mask_of_other_size_is_resized_with_warning(tmp_path: Path) -> None:
    path = _save(tmp_path / "small_mask.png", _square((32, 32)))
    with pytest.warns(UserWarning, match=r"small_mask\.png: mask is 32x32.*64x64"):
        mask = read_mask([path], size=(64, 64))
    assert mask.shape == (64, 64)
    np.testing.assert_array_equal(mask, np.kron(_square((32, 32)) > 0, np.ones((2, 2), bool)))


def test_masks_of_one_image_are_resized_to_the_first(tmp_path: Path) -> None:
    first = _save(tmp_path / "a_mask.png", np.zeros((10, 20), np.uint8))
    second = _save(tmp_path / "a_mask_1.png", np.full((5, 10), 255, np.uint8))
    with pytest.warns(UserWarning, match=r"a_mask_1\.png: mask is 5x10.*10x20"):
        mask = read_mask([first, second])
    assert mask.shape == (10, 20) and mask.all()


def test_read_mask_needs_a_file() -> None:
    with pytest.raises(AnomedError, match="no mask files"):
        read_mask([])
