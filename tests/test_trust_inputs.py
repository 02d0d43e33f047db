"""Hostile inputs (issue 26 items 9, 14-16): images read by their real range, decompression bombs,
OS errors that name no file, and limits checked before any work: exit code 2 and one line."""

from __future__ import annotations

import errno
import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dgnam import cli, parse_unit
from dgnam.cli import info as cli_info
from dgnam.infra.errors import error_line
from dgnam.infra.images import ImageFileError, read_image
from dgnam.run import MAX_JOBS, make_jobs
from dgnam.core.units import MAX_UNITS, UnitError

from test_errors import one_line_error, vis


@pytest.fixture
def tiny(tiny_registry):
    return tiny_registry


def forged_png(path, width: int, height: int):
    """A PNG of ~70 bytes whose header says ``width`` x ``height`` (its pixel data is cut short): a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def exemplars_argv(tiny, data, out):
    net_file, _ = tiny
    return ["exemplars", "tiny", "logits:1", "--net-weights", str(net_file), "--data", str(data), "--size", "32", "-k", "1",
            "--out", str(out), "--quiet"]  # fmt: skip


# ---- item 9: 16-bit and float images are read by their real range


def _grey16(path, value: int):
    Image.fromarray(np.full((20, 24), value, np.uint16)).save(path)  # PIL mode I;16
    return path


def test_16bit_png_is_scaled_from_its_range_everywhere(tmp_path):
    from dgnam.eval.exemplars import open_images
    from dgnam.methods.accentuate import load_photo

    png = _grey16(tmp_path / "grey16.png", 0x8000)  # mid-grey: 128 in 8 bits, not white
    assert Image.open(png).mode == "I;16"
    pixels = read_image(png)
    assert pixels.shape == (20, 24, 3) and pixels.dtype == np.uint8 and set(np.unique(pixels)) == {128}
    assert read_image(png, keep_alpha=True)[..., 3].min() == 255
    assert abs(float(load_photo(png).mean()) - 128 / 255) < 1e-6  # --init-image
    data = tmp_path / "data"
    data.mkdir()
    _grey16(data / "a.png", 0x4000)
    assert set(np.unique(open_images(data, size=16).image(0))) == {64}  # --data folders
    ramp = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # every 8-bit level once
    Image.fromarray(ramp).save(tmp_path / "ramp.tif")
    assert np.array_equal(read_image(tmp_path / "ramp.tif")[..., 0], np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_float_tiff_is_read_as_0_to_1_and_refused_outside(tmp_path, tiny, capsys):
    Image.fromarray(np.full((16, 16), 0.25, np.float32)).save(tmp_path / "quarter.tif")  # PIL mode F
    assert set(np.unique(read_image(tmp_path / "quarter.tif"))) == {64}  # not black
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.linspace(0, 300, 256, dtype=np.float32).reshape(16, 16)).save(data / "hdr.tif")
    line = one_line_error(capsys, exemplars_argv(tiny, data, tmp_path / "ex"))
    assert "hdr.tif holds float pixels from 0 to 300" in line and "0-1" in line
    Image.fromarray(np.full((16, 16), 70000, np.int32)).save(tmp_path / "int32.tif")  # mode I: no defined range
    with pytest.raises(ImageFileError, match="int32.tif holds I .32-bit integer. pixels"):
        read_image(tmp_path / "int32.tif")


# ---- item 15: decompression bombs are refused from the header, with the size


def test_a_bomb_in_a_data_folder_is_refused_with_its_size(tmp_path, tiny, capsys):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (40, 40), "red").save(data / "fine.png")
    forged_png(data / "bomb.png", 20000, 20000)
    line = one_line_error(capsys, exemplars_argv(tiny, data, tmp_path / "ex"))
    assert "bomb.png is 400,000,000 pixels" in line and "100,000,000" in line  # PIL's own refusal, named
    (data / "bomb.png").unlink()
    forged_png(data / "big.png", 12000, 9000)  # over dgnam's limit, under PIL's error (PIL only warns)
    line = one_line_error(capsys, exemplars_argv(tiny, data, tmp_path / "ex"))
    assert "big.png is 12000x9000 = 108,000,000 pixels" in line


def test_a_bomb_as_init_image_is_refused(tmp_path, tiny, capsys):
    bomb = forged_png(tmp_path / "bomb.png", 20000, 20000)
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", "--init-image", str(bomb)))
    assert "bomb.png is 400,000,000 pixels" in line


def test_a_truncated_or_foreign_data_file_is_named(tmp_path, tiny, capsys):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (64, 64), "red").save(tmp_path / "whole.png")
    (data / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    line = one_line_error(capsys, exemplars_argv(tiny, data, tmp_path / "ex"))  # was "image file is truncated", no name
    assert "cut.png cannot be decoded" in line
    with pytest.raises(ImageFileError, match="image bytes is not an image dgnam can read"):
        read_image(b"not an image")


def test_pool_folder_skips_a_bomb_naming_its_size(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 40), "red").save(photos / "fine.png")
    forged_png(photos / "big.png", 12000, 9000)
    with pytest.warns(UserWarning, match=r"big.png is 12000x9000 = 108,000,000 pixels"):
        assert cli.main(["pool", "folder", str(photos), str(tmp_path / "pool"), "--size", "16"]) == 0
    assert "skipped 1 file(s)" in capsys.readouterr().err
    assert np.load(tmp_path / "pool" / "images.npy").shape == (1, 16, 16, 3)


# ---- item 14: OS errors that name no file


@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full: free some space"),
    (OSError(errno.EADDRINUSE, "Address already in use"), "give another --port"),
    (OSError(errno.ECONNRESET, "Connection reset by peer"), "ECONNRESET: Connection reset by peer"),
])  # fmt: skip
def test_os_errors_without_a_file_name_are_one_line(exc, expected, monkeypatch, capsys):
    assert expected in (error_line(exc) or "")

    def fail(_args):
        raise exc

    monkeypatch.setattr(cli_info, "run_nets", fail)
    assert expected in one_line_error(capsys, ["nets"])


def test_serve_on_a_taken_port_names_the_port(tmp_path, capsys):
    (tmp_path / "index.html").write_text("<html></html>")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(capsys, ["atlas", "serve", str(tmp_path), "--port", str(port)])
    assert f"port {port} on 127.0.0.1 is in use already" in line and "another --port" in line


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_impossible_ports_are_refused_by_the_parser(tmp_path, port, capsys):
    line = one_line_error(capsys, ["atlas", "serve", str(tmp_path), "--port", port])
    assert "--port" in line and "0 to 65535" in line


# ---- item 16: limits checked before any work, the limit named


def test_unit_ranges_are_counted_before_they_are_expanded():
    assert len(parse_unit(f"logits:0-{MAX_UNITS - 1}")) == MAX_UNITS
    with pytest.raises(UnitError, match="stands for 100,001 units"):
        parse_unit(f"logits:0-{MAX_UNITS // 2},0-{MAX_UNITS // 2 - 1}")
    with pytest.raises(ValueError, match="ask for 1,000,002 images, more than the limit of 1,000,000"):
        make_jobs(parse_unit("logits:0-1"), range(MAX_JOBS // 2 + 1))
    with pytest.raises(UnitError, match="stands for 100,000,000 units, more than the limit of 100,000"):
        parse_unit("logits:0-99999999")  # used to build 100 million units (23.7 GB) first


def test_a_huge_unit_range_is_one_line(tmp_path, tiny, capsys):
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", unit="logits:0-200000"))
    assert "200,001 units, more than the limit of 100,000" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--steps", "1e13"], "from 1 to 1,000,000 steps"),
    (["--steps", "10000000000000"], "give 1 to 1,000,000 steps"),
    (["--steps", "0"], "give 1 to 1,000,000 steps"),
    (["--input-size", "0"], "each side is 8 to 4,096 px"),
    (["--input-size", "100000"], "each side is 8 to 4,096 px"),
    (["--input-size", "32x0"], "each side is 8 to 4,096 px"),
])  # fmt: skip
def test_visualize_limits(tmp_path, tiny, capsys, flags, expected):
    line = one_line_error(capsys, vis(tiny, tmp_path / "run", *flags))
    assert expected in line and "Traceback" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, expected", [
    (["pool", "folder", "photos", "pool", "--size", "0"], "give 16 to 4,096 px a side"),
    (["pool", "folder", "photos", "pool", "--size", "100000"], "give 16 to 4,096 px a side"),
    (["pool", "pack", "photos", "p.npz", "--size", "-5"], "give 16 to 4,096 px a side"),
    (["train-generator", "--pool", "p", "--out", "t", "--steps", "1e13"], "from 1 to 100,000,000 training steps"),
])  # fmt: skip
def test_size_and_step_limits_of_other_commands(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (40, 40), "red").save(tmp_path / "photos" / "a.png")
    assert expected in one_line_error(capsys, argv)
    assert not (tmp_path / "pool").exists()


def test_image_folder_pool_checks_its_size_before_listing(tmp_path):
    from dgnam.pool import ImageFolderPool

    with pytest.raises(ValueError, match="image size 0 px is out of range: give 1 to 4096"):
        ImageFolderPool(tmp_path / "not-even-there", size=0)
