"""MACO (Fel et al. 2023): fixed photo amplitude spectrum, optimized phase, transparency map."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dgnam
from dgnam.infra.hub import WeightsError, sha256_file
from dgnam.core.param import MacoImage, resize_spectrum
from dgnam.methods.maco import SPECTRA, MacoConfig, average_spectrum, decorrelate, load_spectrum, maco_am, spectrum_path
from dgnam.core.param import color_correlation_normalized

from conftest import needs

ROOT = Path(__file__).resolve().parents[1]


def one_over_f(s: int, power: float = 1.0) -> torch.Tensor:
    """A (3, s, s//2+1) amplitude ~ 1/f^power (f in cycles per pixel), DC 10x its neighbours, channels scaled 1, 0.5, 0.25."""
    f = (torch.fft.fftfreq(s)[:, None] ** 2 + torch.fft.rfftfreq(s)[None, :] ** 2).sqrt().double()
    m = f.clamp_min(1.0 / s) ** -power
    m[0, 0] = 10 * s
    return torch.stack([m, 0.5 * m, 0.25 * m])


@pytest.mark.parametrize("name", sorted(SPECTRA))
def test_shipped_spectrum_is_checked_and_photo_like(name):
    m = load_spectrum(name)
    assert m.shape == (3, 64, 33) and m.dtype == torch.float32 and (m > 0).all()
    assert spectrum_path(name).stat().st_size < 20_000  # a few KB of float16
    # amplitude falls with frequency about as 1/f (photos: power ~ 1/f^2), in the luminance channel
    f = (torch.fft.fftfreq(64)[:, None] ** 2 + torch.fft.rfftfreq(64)[None, :] ** 2).sqrt()
    ring = lambda lo, hi: float(m[0][(f >= lo) & (f < hi)].mean())  # noqa: E731
    slope = np.log(ring(0.2, 0.25) / ring(0.04, 0.05)) / np.log(0.225 / 0.045)
    assert -1.6 < slope < -0.7, slope
    # decorrelated colour is whitened: the three channels carry energy of the same order
    energy = m[:, 1:].mean((1, 2))
    assert float(energy.max() / energy.min()) < 2.0, energy


def test_a_changed_spectrum_file_is_refused(monkeypatch, tmp_path):
    name, entry = next(iter(SPECTRA.items()))
    monkeypatch.setitem(SPECTRA, name, (entry[0], "0" * 64, entry[2]))
    with pytest.raises(WeightsError, match="sha256"):
        load_spectrum(name)
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"magnitude": torch.ones(3, 8, 8)}, str(bad))
    with pytest.raises(WeightsError, match=r"\(3, S, S // 2 \+ 1\)"):
        load_spectrum(bad)
    with pytest.raises(ValueError, match="neither a shipped name"):
        load_spectrum("no_such_spectrum")


@needs("skimage", "scikit-image (test extra)")
def test_the_script_reproduces_the_shipped_spectrum(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import maco_spectrum
    finally:
        sys.path.pop(0)
    out = tmp_path / "spectrum.safetensors"
    assert maco_spectrum.main(["--skimage", "--out", str(out)]) == 0
    assert sha256_file(out) == SPECTRA["skimage_photos"][1]


def test_average_spectrum_and_decorrelation():
    c = color_correlation_normalized()
    x = torch.rand(2, 3, 16, 16)
    mixed = torch.einsum("ij,njhw->nihw", c, decorrelate(x))
    assert torch.allclose(mixed, x, atol=1e-5)  # decorrelate inverts the colour mixing of MacoImage
    flat = torch.full((1, 3, 16, 16), 0.5)
    spec = average_spectrum(flat)
    assert spec.shape == (3, 16, 9)
    assert spec[:, 1:, :].abs().max() < 1e-9 and spec[:, 0, 1:].abs().max() < 1e-9  # a flat image: DC only
    d = decorrelate(flat.double())[0, :, 0, 0]
    assert torch.allclose(spec[:, 0, 0], d.abs() * 16, atol=1e-9)  # ortho FFT: DC = mean * sqrt(H W)


def test_resize_spectrum_reads_the_same_frequencies():
    m = one_over_f(32)
    same = resize_spectrum(m, (32, 32))
    assert torch.allclose(same, m.float(), rtol=1e-4)  # on its own grid: unchanged, DC included
    big = resize_spectrum(m, (96, 128))
    assert big.shape == (3, 96, 65)
    # f = 0.25 cycles/px: row 24 of 96 (column 0) and column 32 of 128 (row 0) -> 1/0.25 = 4
    assert abs(float(big[0, 24, 0]) - 4.0) < 0.05 and abs(float(big[0, 0, 32]) - 4.0) < 0.05
    assert abs(float(big[1, 0, 32]) - 2.0) < 0.03  # channel ratios kept
    # the DC term keeps its ratio to the contrast: scaled by sqrt(H W) / S
    assert abs(float(big[0, 0, 0]) - 10 * 32 * (96 * 128) ** 0.5 / 32) < 1e-2 * float(big[0, 0, 0])
    # DC is not smeared into its neighbours: the lowest frequency (1/128) follows 1/f (clamped at 1/32)
    # (smeared, log-interpolating from the DC's 320 would give ~180 there)
    assert 25.0 < float(big[0, 0, 1]) < 40.0


def test_magnitude_stays_fixed_and_the_phase_changes():
    torch.manual_seed(0)
    m = one_over_f(16)
    param = MacoImage([0, 1], (24, 24), m)
    fixed = param.magnitude.clone()
    phase0 = param.phase.detach().clone()
    assert [n for n, _ in param.named_parameters()] == ["phase"]  # the magnitude is a buffer
    target = torch.rand(2, 3, 24, 24)
    opt = torch.optim.NAdam(param.parameters(), lr=1.0)
    for _ in range(5):
        loss = (param() - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(param.magnitude, fixed)
    assert (param.phase - phase0).abs().mean() > 0.1  # the phase moved
    # the image's amplitude spectrum is the fixed magnitude, up to one scale per image (the standardization);
    # columns 0 and W/2 are excluded (irfft2 keeps only their Hermitian part), and the DC (mean removed)
    spectrum = torch.fft.rfft2(param.linear_image().detach(), norm="ortho").abs()[..., 1:-1]
    ratio = spectrum / fixed[..., 1:-1]
    for i in range(2):
        assert ratio[i].std() / ratio[i].mean() < 1e-3


def test_maco_raises_the_activation_and_saves_a_transparency_map(tiny_target):
    units = dgnam.parse_units(["logits:2", "conv2:3@center"])
    r = maco_am(tiny_target, units, [0, 1], MacoConfig(steps=25), progress=False)  # the 224 px transforms, scaled to 32 px (2, 2, 1)
    assert r.method == "maco" and r.config["lr"] == 1.0 and r.config["size"] == (32, 32)
    assert r.images.shape == (2, 3, 32, 32) and 0 <= float(r.images.min()) and float(r.images.max()) <= 1
    # the logit beats the best of 64 random phases of the same spectrum; the hidden unit rises several-fold
    with torch.no_grad():
        chance = tiny_target(MacoImage(list(range(100, 164)), 32, load_spectrum())())[:, 2]
    assert float(r.final[0]) > float(chance.max()) and float(r.final[0]) > float(chance.mean() + 3 * chance.std()), (r.final, chance)
    assert float(r.final[1]) > 4 * float(r.history[1, 0]) > 0, r.history[1]
    alpha = r.maps["transparency"]
    assert alpha.shape == (2, 32, 32) and torch.allclose(alpha.flatten(1).max(1).values, torch.ones(2))
    assert float(alpha.min()) >= 0 and float(alpha.std()) > 0.01  # not uniform
    # a hidden unit read at the centre: its gradient is concentrated around the centre, not at the corners
    centre, corner = float(alpha[1, 12:20, 12:20].mean()), float(alpha[1, :6, :6].mean())
    assert centre > 2 * corner, (centre, corner)
    # each element depends only on its own seed and unit, not on the batch
    alone = maco_am(tiny_target, units[:1], [0], MacoConfig(steps=25), progress=False)
    assert torch.allclose(alone.images[0], r.images[0], atol=1e-5)


def test_maco_config_checks():
    with pytest.raises(ValueError, match="steps"):
        MacoConfig(steps=0)
    with pytest.raises(ValueError, match="noise"):
        MacoConfig(noise=-1)


def test_pixel_maco_from_the_cli_saves_the_transparency_maps(tmp_path, monkeypatch):
    import json

    from PIL import Image

    from dgnam import cli
    from dgnam.infra.hub import WeightSource
    from dgnam.nets import InputSpec, NetSpec
    from dgnam.methods.pixel import METHODS, PixelConfig
    from dgnam.infra.images import to_pil

    from conftest import CATEGORIES, TinyNet

    torch.manual_seed(0)
    net_file = tmp_path / "tiny_net.pth"
    torch.save(TinyNet().state_dict(), net_file)
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    dgnam.nets.catalog._ensure_builtin()
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny", NetSpec("tiny", TinyNet, WeightSource("tiny_net.pth"), InputSpec(size=(32, 32), min_size=8), CATEGORIES))
    assert "maco" in METHODS and PixelConfig(method="maco").resolved().lr == 1.0 and PixelConfig(method="maco").resolved().noise == MacoConfig().noise
    out = tmp_path / "run"
    assert cli.main(["visualize", "--net", "tiny", "--net-weights", str(net_file), "--pixel", "maco", "--unit", "logits:0-2",
                     "--steps", "4", "--batch-size", "2", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    record = json.loads((out / "results.json").read_text())
    assert record["method"] == "pixel:maco" and record["config"]["spectrum"] == "pool"
    for item in record["items"]:
        alpha = np.asarray(Image.open(out / item["maps"]["transparency"]))
        assert alpha.shape == (32, 32) and alpha.max() == 255 and alpha.std() > 1
    # the API gives the same images (the CLI adds nothing to the method)
    net = dgnam.load_net("tiny", weights=net_file)
    r = dgnam.visualize(net, dgnam.parse_units(["logits:0-2"]), seeds=[0], config=PixelConfig(method="maco", steps=4), batch_size=2, progress=False)
    assert r.maps["transparency"].shape == (3, 32, 32)
    first = np.asarray(Image.open(out / record["items"][0]["file"]))
    assert np.abs(first.astype(int) - np.asarray(to_pil(r.images[0])).astype(int)).max() <= 1
