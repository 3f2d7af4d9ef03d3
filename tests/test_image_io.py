"""read_rgb on real files written here: every colour mode, EXIF rotation, JPEG draft, every failure mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from snapsearch.data.image_io import WHITE, ImageReadError, read_rgb

MAX_PIXELS = 50_000_000
EXIF_ORIENTATION_TAG = 0x0112
ROTATE_90_CW = 6  # EXIF: stored image must be turned 90° clockwise to display upright
ROTATE_90_CCW = 8  # EXIF: stored image must be turned 90° counter-clockwise to display upright
RED = (255, 0, 0)
BLUE = (0, 0, 255)
CYAN = (0, 255, 255)
JPEG_TOL = 40  # JPEG chroma subsampling blurs colours, so compare JPEG pixels loosely
JPEG_QUALITY = 95
SEED = 0
GROCERY_SAMPLE = Path("dataset/train/Fruit/Banana/Banana_001.jpg")


def _halves(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> np.ndarray:
    """An asymmetric pattern (left half one colour, right half another) so any rotation is detectable."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 2] = left
    arr[:, width // 2 :] = right
    return arr


def _save_jpeg(path: Path, arr: np.ndarray, orientation: int | None = None) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION_TAG] = orientation
    Image.fromarray(arr).save(path, "JPEG", quality=JPEG_QUALITY, exif=exif)
    return path


def _noise(height: int, width: int) -> np.ndarray:
    """Incompressible content, so cutting the encoded file in half really removes image data."""
    return np.random.default_rng(SEED).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _assert_close(pixel: np.ndarray, colour: tuple[int, int, int], tol: int = JPEG_TOL) -> None:
    assert np.abs(pixel.astype(int) - np.array(colour)).max() <= tol, (pixel, colour)


def _read_error(path: Path, **kwargs: int) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        read_rgb(path, max_pixels=kwargs.pop("max_pixels", MAX_PIXELS), **kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.path == str(path)
    return info.value


# --- orientation and JPEG draft -----------------------------------------------------------------------------


def test_plain_rgb_jpeg_roundtrip(tmp_path: Path) -> None:
    out = read_rgb(_save_jpeg(tmp_path / "a.jpg", _halves(64, 32, RED, BLUE)), max_pixels=MAX_PIXELS)
    assert out.shape == (32, 64, 3) and out.dtype == np.uint8
    assert out.flags.writeable and out.flags.c_contiguous  # albumentations/torch need a writable array
    _assert_close(out[16, 8], RED)
    _assert_close(out[16, 56], BLUE)


@pytest.mark.parametrize(("orientation", "top", "bottom"), [(ROTATE_90_CW, RED, BLUE), (ROTATE_90_CCW, BLUE, RED)])
def test_exif_orientation_is_applied(
    tmp_path: Path, orientation: int, top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> None:
    path = _save_jpeg(tmp_path / "rot.jpg", _halves(64, 32, RED, BLUE), orientation)
    out = read_rgb(path, max_pixels=MAX_PIXELS)
    assert out.shape == (64, 32, 3)  # landscape stored, portrait displayed
    _assert_close(out[8, 16], top)
    _assert_close(out[56, 16], bottom)


def test_draft_downscales_jpeg_keeping_shorter_side(tmp_path: Path) -> None:
    path = _save_jpeg(tmp_path / "big.jpg", _halves(1600, 1200, RED, BLUE))
    out = read_rgb(path, max_pixels=MAX_PIXELS, draft_size=200)
    assert 200 <= min(out.shape[:2]) < 1200
    assert out.shape[1] > out.shape[0]  # aspect kept: still landscape
    _assert_close(out[out.shape[0] // 2, out.shape[1] // 8], RED)
    _assert_close(out[out.shape[0] // 2, out.shape[1] * 7 // 8], BLUE)


def test_draft_composes_with_exif_rotation(tmp_path: Path) -> None:
    path = _save_jpeg(tmp_path / "big_rot.jpg", _halves(1600, 1200, RED, BLUE), ROTATE_90_CW)
    full = read_rgb(path, max_pixels=MAX_PIXELS)
    out = read_rgb(path, max_pixels=MAX_PIXELS, draft_size=200)
    assert full.shape == (1600, 1200, 3)
    assert 200 <= min(out.shape[:2]) < 1200
    assert out.shape[0] > out.shape[1]  # rotated to portrait after the drafted decode
    assert out.shape[0] / out.shape[1] == pytest.approx(full.shape[0] / full.shape[1], rel=0.01)
    _assert_close(out[out.shape[0] // 8, out.shape[1] // 2], RED)
    _assert_close(out[out.shape[0] * 7 // 8, out.shape[1] // 2], BLUE)


def test_draft_never_upscales_and_ignores_non_jpeg(tmp_path: Path) -> None:
    small_jpeg = _save_jpeg(tmp_path / "s.jpg", _halves(64, 32, RED, BLUE))
    small = read_rgb(small_jpeg, max_pixels=MAX_PIXELS, draft_size=200)
    assert small.shape == (32, 64, 3)
    png = tmp_path / "big.png"
    Image.fromarray(_halves(800, 600, RED, BLUE)).save(png)
    assert read_rgb(png, max_pixels=MAX_PIXELS, draft_size=100).shape == (600, 800, 3)


def test_draft_size_must_be_positive(tmp_path: Path) -> None:
    path = _save_jpeg(tmp_path / "a.jpg", _halves(64, 32, RED, BLUE))
    with pytest.raises(ValueError, match="draft_size"):
        read_rgb(path, max_pixels=MAX_PIXELS, draft_size=0)


# --- colour modes -------------------------------------------------------------------------------------------


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8), mode="L").save(path)
    out = read_rgb(path, max_pixels=MAX_PIXELS)
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [128, 128, 128], [255, 255, 255]])


def test_one_bit_image(tmp_path: Path) -> None:
    path = tmp_path / "b.png"
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8), mode="L").convert("1").save(path)
    np.testing.assert_array_equal(read_rgb(path, max_pixels=MAX_PIXELS)[0], [[0, 0, 0], [255, 255, 255]])


def _palette_image() -> Image.Image:
    im = Image.new("P", (2, 1))
    im.putpalette([*RED, *BLUE])
    im.putdata([0, 1])
    return im


def test_palette_image(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    _palette_image().save(path)
    np.testing.assert_array_equal(read_rgb(path, max_pixels=MAX_PIXELS)[0], [RED, BLUE])


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"pt.{fmt.lower()}"
    _palette_image().save(path, fmt, transparency=1)  # index 1 (blue) is transparent
    np.testing.assert_array_equal(read_rgb(path, max_pixels=MAX_PIXELS)[0], [RED, WHITE])


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "16.png"
    Image.fromarray(np.array([[0, 257, 32768, 65535]], dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = read_rgb(path, max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_thirty_two_bit_int_tiff_holding_16_bit_data(tmp_path: Path) -> None:
    path = tmp_path / "i.tif"
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32)).save(path)
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(read_rgb(path, max_pixels=MAX_PIXELS)[0, :, 0], [0, 128, 255])


def test_float_tiff_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(path)
    assert Image.open(path).mode == "F"
    np.testing.assert_array_equal(read_rgb(path, max_pixels=MAX_PIXELS)[0, :, 0], [0, 128, 255])


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    cmyk = Image.new("CMYK", (64, 32), (255, 0, 0, 0))  # left: pure cyan ink
    cmyk.paste((0, 255, 255, 0), (32, 0, 64, 32))  # right: magenta + yellow ink = red
    cmyk.save(path, "JPEG", quality=JPEG_QUALITY)
    out = read_rgb(path, max_pixels=MAX_PIXELS)
    assert out.shape == (32, 64, 3)
    _assert_close(out[16, 8], CYAN)
    _assert_close(out[16, 56], RED)


def test_rgba_transparency_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    pixels = np.array([[[*RED, 255], [0, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(pixels, mode="RGBA").save(path)
    out = read_rgb(path, max_pixels=MAX_PIXELS)
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, 0], RED)  # opaque: untouched
    np.testing.assert_array_equal(out[0, 1], WHITE)  # fully transparent (black underneath): white, not black
    assert np.abs(out[0, 2].astype(int) - 127).max() <= 1  # half-transparent black over white: mid grey


def test_la_transparency_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    Image.fromarray(np.array([[[50, 255], [0, 0]]], dtype=np.uint8), mode="LA").save(path)
    np.testing.assert_array_equal(read_rgb(path, max_pixels=MAX_PIXELS)[0], [[50, 50, 50], WHITE])


# --- content, not extension ---------------------------------------------------------------------------------


def test_png_named_jpg_is_read_by_content(tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(_halves(8, 4, RED, BLUE)).save(path, "PNG")
    np.testing.assert_array_equal(read_rgb(path, max_pixels=MAX_PIXELS), _halves(8, 4, RED, BLUE))


def test_text_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    assert "not an image" in _read_error(path).reason


# --- failures -----------------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    assert _read_error(path).reason == "empty file"


def test_missing_file(tmp_path: Path) -> None:
    err = _read_error(tmp_path / "nowhere.jpg")
    assert err.reason == "file not found"
    assert "nowhere.jpg" in str(err)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    assert "not a regular file" in _read_error(tmp_path).reason


def test_module_does_not_enable_truncated_loading() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # else truncated files would silently decode as grey


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = _save_jpeg(tmp_path / "cut.jpg", _noise(128, 128))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _read_error(path).reason


def test_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(_noise(128, 128)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _read_error(path)


def test_huge_image_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.png"
    Image.new("RGB", (3000, 3000)).save(path)

    def _no_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded for an image that should be refused from its header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", _no_decode)
    reason = _read_error(path, max_pixels=1_000_000).reason
    assert "image too large: 3000x3000" in reason
    assert "max_pixels=1000000" in reason and "data.max_image_pixels" in reason


# With MAX_IMAGE_PIXELS=100 Pillow warns above 100 px (10x15) and raises above 200 px (20x20).
@pytest.mark.parametrize(("width", "height"), [(10, 15), (20, 20)])
def test_pillow_decompression_bomb_guard_becomes_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int, height: int
) -> None:
    path = tmp_path / "bomb.png"
    Image.new("RGB", (width, height)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert "image too large" in _read_error(path).reason


# --- real data ----------------------------------------------------------------------------------------------


@pytest.mark.grocery
def test_real_grocery_image(grocery: Path) -> None:
    path = grocery / GROCERY_SAMPLE
    out = read_rgb(path, max_pixels=MAX_PIXELS)
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    assert min(out.shape[:2]) > 0 and out.std() > 0  # decoded real content, not a blank canvas
