"""PPGN-h-style sampling in a generator's code space (dgnam.methods.ppgn), on tiny nets built here."""

import json

import pytest
import torch
from PIL import Image
from torch import nn

import dgnam
from dgnam import cli
from dgnam.generators import GeneratorSpec
from dgnam.infra.hub import WeightSource
from dgnam.nets import InputSpec, NetSpec
from dgnam.eval.metrics import image_diversity, sample_diversity
from dgnam.methods.ppgn import SampleConfig, layer_encoder, load_encoder, sample

from conftest import TinyGenerator, TinyNet


class PooledNet(nn.Module):
    """A linear classifier on 4x4-pooled pixels: its class probabilities respond strongly to the image."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(1))
        self.logits = nn.Linear(48, classes)

    def forward(self, x):
        return self.logits(self.pool(x))


class FlatColour(dgnam.Generator):
    """code (3,) -> an 8x8 image of that constant colour (no squashing), so E(G(h)) is known in closed form."""

    def __init__(self):
        super().__init__((3,), (8, 8))

    def decode(self, code):
        return code[:, :, None, None].expand(-1, -1, 8, 8)


class LinearGen(dgnam.Generator):
    """code (48,) -> 32x32 image: a code of PooledNet's pool layer's shape, for the shared-layer path."""

    def __init__(self):
        super().__init__((48,), (32, 32))
        self.fc = nn.Linear(48, 3 * 8 * 8)

    def decode(self, code):
        return torch.sigmoid(nn.functional.interpolate(self.fc(code).view(-1, 3, 8, 8), scale_factor=4, mode="bilinear"))


def frozen(gen, lower, upper):
    gen.eval().set_bounds(lower, upper)
    for p in gen.parameters():
        p.requires_grad_(False)
    return gen


@pytest.fixture
def pooled_target():
    torch.manual_seed(0)
    model = PooledNet()
    with torch.no_grad():
        model.logits.weight.mul_(3.0)
    return dgnam.wrap_model(model, InputSpec(size=(32, 32), min_size=8, mean=(0.5,) * 3, std=(0.5,) * 3), name="pooled")


@pytest.fixture
def gen():
    torch.manual_seed(1)
    return frozen(TinyGenerator(), -3.0, 3.0)


def test_config_checks_and_sample_steps():
    cfg = SampleConfig(steps=60, burn_in=20, every=10)
    assert cfg.sample_steps == [30, 40, 50, 60]
    assert SampleConfig.for_samples(10, chains=4, burn_in=5, every=3).steps == 5 + 3 * 3  # ceil(10 / 4) per chain
    with pytest.raises(ValueError, match="burn_in \\+ every"):
        SampleConfig(steps=20, burn_in=20, every=10)
    with pytest.raises(ValueError, match="class_term"):
        SampleConfig(class_term="softmax")


def test_chain_raises_the_class_probability_and_keeps_sampling(pooled_target, gen):
    units = [dgnam.Unit("logits", 2)] * 4
    cfg = SampleConfig(steps=60, burn_in=20, every=10, eps1=0.0, eps2=1.0, eps3=0.1)
    r = sample(pooled_target, gen, units, [0, 1, 2, 3], cfg, progress=False)
    assert r.images.shape == (4, 4, 3, 32, 32) and r.codes.shape == (4, 4, 8) and r.trajectory.shape == (4, 61)
    assert r.class_terms == ["log_softmax"] * 4
    start = r.score_trajectory[:, 0].exp()
    assert (r.probabilities.mean(1) > start + 0.1).all(), (start, r.probabilities)  # every chain climbs
    # the kept values are those of the kept images
    with torch.no_grad():
        logits = pooled_target(r.images.flatten(0, 1))
    assert torch.allclose(logits[:, 2].view(4, 4), r.activations, atol=1e-5)
    assert torch.allclose(torch.softmax(logits, 1)[:, 2].view(4, 4), r.probabilities, atol=1e-5)
    assert torch.allclose(r.trajectory[:, cfg.sample_steps[0]], r.activations[:, 0])


def test_samples_differ_sampling_not_collapsing(pooled_target, gen):
    """One chain's kept states stay diverse with noise; without noise the chain settles (mode seeking)."""
    unit = [dgnam.Unit("logits", 2)]
    noisy = sample(pooled_target, gen, unit, [0], SampleConfig(steps=90, burn_in=10, every=10, eps1=0.0, eps3=0.5), progress=False)
    settled = sample(pooled_target, gen, unit, [0], SampleConfig(steps=90, burn_in=10, every=10, eps1=0.0, eps3=0.0), progress=False)
    d_noisy, d_settled = sample_diversity(noisy)["pixels"], sample_diversity(settled)["pixels"]
    assert d_noisy > 0.05 and d_noisy > 4 * d_settled, (d_noisy, d_settled)
    flat = noisy.images[0].flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e9).min() > 0.5  # no two samples alike
    assert noisy.probabilities.mean() > noisy.score_trajectory[0, 0].exp()  # and still conditioned on the class
    per_unit = image_diversity({"a": noisy.images[0], "b": settled.images[0]})["per_unit"]
    assert per_unit["a"] == pytest.approx(d_noisy) and per_unit["b"] == pytest.approx(d_settled)


def test_reproducible_per_seed_and_independent_of_the_batch(pooled_target, gen):
    units = [dgnam.Unit("logits", 1), dgnam.Unit("logits", 3), dgnam.Unit("logits", 1)]
    cfg = SampleConfig(steps=20, burn_in=5, every=5, eps1=0.0)
    a = sample(pooled_target, gen, units, [0, 1, 2], cfg, progress=False)
    b = sample(pooled_target, gen, units, [0, 1, 2], cfg, progress=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.trajectory, b.trajectory)
    alone = sample(pooled_target, gen, units[2:], [2], cfg, progress=False)
    assert torch.allclose(alone.codes[0], a.codes[2], atol=1e-5)
    assert not torch.allclose(a.codes[0], a.codes[2], atol=1e-3)  # same unit, another seed: another chain


def test_prior_term_pulls_codes_to_the_reconstruction():
    """G paints the code as a flat colour and E(x) = 0.5 * mean colour + 0.2, so E(G(h)) = 0.5 h + 0.2 and
    with only the eps1 term h_t = 0.4 + (1 - eps1 / 2)^t (h_0 - 0.4) exactly."""
    target = dgnam.wrap_model(PooledNet(), InputSpec(size=(8, 8), min_size=8), name="flat")
    g = frozen(FlatColour(), -10.0, 10.0)
    calls = []

    def encoder(images):
        calls.append(images.shape[0])
        return 0.5 * images.mean(dim=(2, 3)) + 0.2

    cfg = SampleConfig(steps=30, burn_in=0, every=10, eps1=0.1, eps2=0.0, eps3=0.0, init_std=2.0)
    r = sample(target, g, [dgnam.Unit("logits", 0)] * 2, [0, 1], cfg, encoder=encoder, progress=False)
    h0 = g.clip(g.random_code([0, 1], 2.0))
    for k, t in enumerate(r.steps):
        expected = 0.4 + 0.95**t * (h0 - 0.4)
        assert torch.allclose(r.codes[:, k], expected, atol=1e-5), t
    assert calls == [2] * 30  # one encoder call per update, on the whole batch
    with pytest.raises(ValueError, match="shape"):  # an encoder of another code space
        sample(target, g, [dgnam.Unit("logits", 0)], [0], cfg, encoder=lambda x: x.mean(dim=(1, 2, 3))[:, None], progress=False)
    # without an encoder, a generator that does not name one gets an error that says the fix
    with pytest.raises(ValueError, match="eps1=0"):
        sample(target, g, [dgnam.Unit("logits", 0)], [0], cfg, progress=False)


def test_shared_layer_encoder_equals_a_separate_encoder(pooled_target):
    torch.manual_seed(2)
    g = frozen(LinearGen(), 0.0, 1.0)
    cfg = SampleConfig(steps=12, burn_in=2, every=5, eps1=0.2, eps3=0.05)
    units = [dgnam.Unit("logits", 0), dgnam.Unit("pool", 5)]
    shared = sample(pooled_target, g, units, [0, 1], cfg, encoder="pool", progress=False)
    separate = sample(pooled_target, g, units, [0, 1], cfg, encoder=layer_encoder(pooled_target, "pool"), progress=False)
    assert torch.allclose(shared.codes, separate.codes, atol=1e-6)
    assert shared.class_terms == ["log_softmax", "activation"]  # a hidden unit conditions on its activation
    assert shared.trajectory[1, -1] > shared.trajectory[1, 0]


def test_prior_generator_update_in_whitened_units(tmp_path, monkeypatch):
    """One step with all three terms, against the formula: for a PriorGenerator the encoder comes from
    its config, the gradient is scaled by code_std^2 and the noise by code_std."""
    from dgnam.generators.prior import PriorConfig, PriorGenerator
    from dgnam.methods.ppgn import _NOISE_STREAM

    torch.manual_seed(0)
    (tmp_path / "home" / "weights").mkdir(parents=True)
    torch.save(TinyNet().state_dict(), tmp_path / "home" / "weights" / "tiny_enc.pth")
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    dgnam.nets.catalog._ensure_builtin()
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny_enc", NetSpec("tiny_enc", TinyNet, WeightSource("tiny_enc.pth"), InputSpec(size=(32, 32), min_size=8)))
    prior = PriorGenerator(PriorConfig(encoder="tiny_enc", layer="pool", code_shape=(6,), output_size=16, fc_width=16, channels=(16, 8, 8))).eval()
    std = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    prior.set_code_stats(torch.full((6,), 5.0), std, torch.full((6,), -10.0))
    for p in prior.parameters():
        p.requires_grad_(False)
    target = dgnam.wrap_model(TinyNet(), InputSpec(size=(32, 32), min_size=8), name="t")
    cfg = SampleConfig(steps=1, burn_in=0, every=1, eps1=0.3, eps2=0.5, eps3=0.01, init_std=0.5)
    r = sample(target, prior, [dgnam.Unit("logits", 1)] * 2, [3, 4], cfg, progress=False)

    h0 = prior.clip(prior.random_code([3, 4], 0.5)).requires_grad_(True)
    image = prior(h0)
    (grad,) = torch.autograd.grad(torch.log_softmax(target(image), 1)[:, 1].sum(), h0)
    recon = load_encoder("tiny_enc", "pool")(image.detach())
    noise = torch.stack([torch.randn(6, generator=torch.Generator().manual_seed(s + _NOISE_STREAM)) for s in (3, 4)])
    expected = prior.clip(h0 + 0.3 * (recon - h0) + 0.5 * std**2 * grad + 0.01 * std * noise)
    assert torch.allclose(r.codes[:, 0], expected.detach(), atol=1e-6)
    assert not torch.allclose(r.codes[:, 0], h0.detach(), atol=1e-3)


class ViewNet(PooledNet):
    """Returns a reshaped view of its logits: the same values, another tensor object."""

    def forward(self, x):
        return self.logits(self.pool(x)).view(len(x), -1)


class TemperedNet(PooledNet):
    """Returns its logits divided by a temperature: the returned values differ from the logits layer's."""

    def forward(self, x):
        return self.logits(self.pool(x)) / 2.0


def test_class_units_are_found_by_value_or_by_the_registry(monkeypatch):
    from dgnam.methods.ppgn import _class_terms

    spec = InputSpec(size=(32, 32), min_size=8)
    units = [dgnam.Unit("logits", 1), dgnam.Unit("pool", 0), dgnam.Unit("output", 2)]
    view = dgnam.wrap_model(ViewNet(), spec, name="view")
    assert _class_terms(view, units, "auto") == ["log_softmax", "activation", "log_softmax"]
    tempered = dgnam.wrap_model(TemperedNet(), spec, name="tempered")  # not registered: only `output` is the return value
    assert _class_terms(tempered, units, "auto") == ["activation", "activation", "log_softmax"]
    dgnam.nets.catalog._ensure_builtin()
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tempered", NetSpec("tempered", TemperedNet, WeightSource("t.pth"), spec))
    assert _class_terms(tempered, units, "auto") == ["log_softmax", "activation", "log_softmax"]  # its output_layer: logits


def _register(tmp_path, monkeypatch):
    """A tiny net and a prior over its 6-d pool layer (the paper's setting: G inverts the target)."""

    class PoolGen(dgnam.Generator):
        def __init__(self):
            super().__init__((6,), (32, 32))
            self.fc = nn.Linear(6, 3 * 8 * 8)

        def decode(self, code):
            return torch.sigmoid(nn.functional.interpolate(self.fc(code).view(-1, 3, 8, 8), scale_factor=4, mode="bilinear"))

    torch.manual_seed(0)
    net_file, gen_file = tmp_path / "tiny_net.pth", tmp_path / "pool_gen.pth"
    model = TinyNet()
    with torch.no_grad():
        model.logits.weight.mul_(10.0)
    torch.save(model.state_dict(), net_file)
    torch.save(PoolGen().state_dict(), gen_file)
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    dgnam.nets.catalog._ensure_builtin()
    dgnam.generators.catalog._ensure_builtin()
    categories = ("cat", "dog", "bell pepper", "crane", "goldfish")
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tinyc", NetSpec("tinyc", TinyNet, WeightSource("tiny_net.pth"), InputSpec(size=(32, 32), min_size=8), categories))
    spec = GeneratorSpec("pool_gen", PoolGen, WeightSource("pool_gen.pth"), encoder="tinyc:pool", bounds=lambda g: g.set_bounds(0.0, 3.0))
    monkeypatch.setitem(dgnam.generators.spec._REGISTRY, "pool_gen", spec)
    return net_file, gen_file


def test_cli_sample_writes_samples_sheet_and_results(tmp_path, monkeypatch, capsys):
    net_file, gen_file = _register(tmp_path, monkeypatch)
    out = tmp_path / "samples"
    argv = ["sample", "tinyc", "logits:dog", "pool:2", "--generator", "pool_gen", "--net-weights", str(net_file),
            "--generator-weights", str(gen_file), "--samples", "5", "--chains", "2", "--burn-in", "4", "--every", "2",
            "--eps3", "0.2", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["method"] == "ppgn-h:pool_gen" and record["config"]["steps"] == 4 + 3 * 2  # ceil(5 / 2) samples per chain
    assert record["encoder"] == "pool"  # the prior inverts the target: R(h) read in the same forward pass
    assert record["complete"] and len(record["items"]) == 10 and len(record["chains"]) == 4
    dog = [i for i in record["items"] if i["unit"] == "logits:1"]
    assert [(i["seed"], i["step"]) for i in dog] == [(0, 6), (0, 8), (0, 10), (1, 6), (1, 8)]  # 3 + 2 = 5
    assert dog[0]["file"] == "logits_0001_seed0_step0006.png" and dog[0]["label"] == "logits:1 dog"
    for item in record["items"]:
        assert Image.open(out / item["file"]).size == (32, 32)
    assert all(0 < i["probability"] <= 1 for i in dog) and all(i["probability"] is None for i in record["items"] if i["unit"] == "pool:2")
    chain = record["chains"][0]
    assert len(chain["trajectory"]) == 11 and chain["class_term"] == "log_softmax"
    assert set(record["diversity"]["per_unit"]) == {"logits:1", "pool:2"} and record["diversity"]["pixels"] > 0.01
    # one row per chain (3, 2, 3, 2 samples), the shorter rows padded with blank tiles
    sheet = Image.open(out / "contact_sheet.png").convert("RGB")
    assert sheet.size == (3 * 160, 4 * (160 + 30))
    for row, filled in enumerate([3, 2, 3, 2]):
        last = sheet.crop((2 * 160, row * 190, 3 * 160, row * 190 + 190))
        assert (last.getextrema() == ((255, 255),) * 3) == (filled == 2), row  # blank exactly where a chain is short
    capsys.readouterr()
    assert cli.main(argv[:-3] + ["--batch-size", "0", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err


def test_cli_sample_sigterm_keeps_finished_chains_and_refuses_a_used_folder(tmp_path, monkeypatch, capsys):
    import os
    import signal

    from dgnam.io.write import SampleWriter

    net_file, gen_file = _register(tmp_path, monkeypatch)
    out = tmp_path / "samples"
    argv = ["sample", "tinyc", "logits:dog", "pool:2", "--generator", "pool_gen", "--net-weights", str(net_file),
            "--generator-weights", str(gen_file), "--samples", "2", "--chains", "2", "--burn-in", "2", "--every", "1",
            "--batch-size", "2", "--out", str(out), "--quiet"]
    real = SampleWriter.add

    def add(self, result, counts=None):
        real(self, result, counts)
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler's time limit, after the first batch of chains

    monkeypatch.setattr(SampleWriter, "add", add)
    assert cli.main(argv) == 143
    record = json.loads((out / "results.json").read_text())
    assert record["interrupted"] and not record["complete"] and {c["unit"] for c in record["chains"]} == {"logits:1"}
    assert len(record["items"]) == 2 and (out / "contact_sheet.png").exists()
    monkeypatch.setattr(SampleWriter, "add", real)
    capsys.readouterr()
    assert cli.main(argv) == 2 and "is not empty" in capsys.readouterr().err
    assert cli.main(argv + ["--resume", "--eps3", "0.3"]) == 2 and "cannot resume" in capsys.readouterr().err
    assert cli.main(argv + ["--resume"]) == 0  # the second unit's chains only
    resumed = json.loads((out / "results.json").read_text())
    straight = tmp_path / "straight"
    assert cli.main(argv[:-3] + ["--out", str(straight), "--quiet"]) == 0
    record = json.loads((straight / "results.json").read_text())
    assert resumed["complete"] and len(resumed["items"]) == 4
    for key in ("items", "chains", "diversity"):
        assert resumed[key] == record[key], key
    for item in record["items"]:
        assert (out / item["file"]).read_bytes() == (straight / item["file"]).read_bytes()
    assert (out / "contact_sheet.png").read_bytes() == (straight / "contact_sheet.png").read_bytes()
    assert cli.main(argv + ["--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())["items"] == record["items"]


def test_a_chain_whose_activation_becomes_nan_stops_naming_unit_and_step(pooled_target, gen):
    with torch.no_grad():
        pooled_target.model.logits.weight[2, 0] = float("nan")
    cfg = SampleConfig(steps=6, burn_in=2, every=2, eps1=0.0)
    with pytest.raises(ValueError, match=r"the activation of unit logits:2 \(seed 1\) became nan at step 0"):
        sample(pooled_target, gen, [dgnam.Unit("logits", 1), dgnam.Unit("logits", 2)], [0, 1], cfg, progress=False)
