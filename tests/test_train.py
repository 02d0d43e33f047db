"""Training a prior on a tiny pool with a tiny encoder (the real recipe, miniature)."""

import json
import os

import numpy as np
import pytest
import torch

import dgnam
from dgnam.generators.prior import PriorConfig, PriorGenerator, load_prior, save_prior
from dgnam.infra.hub import WeightSource
from dgnam.nets import InputSpec, NetSpec
from dgnam.train.codes import code_stats
from dgnam.train.trainer import TrainConfig, Trainer, clip_gradients, learning_rate, load_trained, stage_weights

from conftest import TinyNet, join_or_kill

TINY_PRIOR = dict(encoder="tiny_enc", layer="pool", code_shape=(6,), output_size=16, fc_width=16, channels=(16, 8, 8))


def register_tiny_encoder(home, monkeypatch):
    torch.manual_seed(0)
    (home / "weights").mkdir(parents=True, exist_ok=True)
    torch.save(TinyNet().state_dict(), home / "weights" / "tiny_enc.pth")
    monkeypatch.setenv("DGNAM_HOME", str(home))
    dgnam.nets.catalog._ensure_builtin()
    spec = NetSpec("tiny_enc", TinyNet, WeightSource("tiny_enc.pth"), InputSpec(size=(32, 32), min_size=8))
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny_enc", spec)


def write_pool(folder, n=40, size=20, seed=0):
    rng = np.random.RandomState(seed)
    # smooth random images (a few colour blobs), so that a tiny generator can fit them
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        c = rng.uniform(0, 255, (3, 3))
        cx, cy = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)[..., None]
        images.append(c[0] * blob + c[1] * (1 - blob) * xx[..., None] + c[2] * 0.3)
    images = np.clip(np.stack(images), 0, 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", images)
    (folder / "card.json").write_text(json.dumps({"size": size, "n_images": n, "train_idx": list(range(n - 6)), "heldout_idx": list(range(n - 6, n))}))
    (folder / "sources.json").write_text(json.dumps([{"source": "test", "file": str(i)} for i in range(n)]))
    return folder


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    register_tiny_encoder(tmp_path / "home", monkeypatch)
    return write_pool(tmp_path / "pool"), tmp_path


def config(**changes):
    base = dict(prior=PriorConfig(**TINY_PRIOR), comparator_layer="conv1", steps=8, batch_size=8, lr=1e-3,
                sample_every=4, heldout_samples=4, views=2, feat_start=0.25, adv_start=0.5, ramp=0.25)
    base.update(changes)
    return TrainConfig(**base)


def interrupt_at(trainer, step):
    """Make ``trainer`` raise KeyboardInterrupt (as Ctrl-C would) when it reaches ``step``."""
    real = trainer.train_step

    def train_step(x, y):
        if trainer.step == step:
            raise KeyboardInterrupt
        return real(x, y)

    trainer.train_step = train_step


def test_stage_weights_bring_losses_in_by_stages():
    cfg = TrainConfig(steps=100, w_pix=1.0, w_feat=0.2, w_adv=0.01, feat_start=0.2, adv_start=0.5, ramp=0.1)
    assert stage_weights(cfg, 10) == (1.0, 0.0, 0.0)
    assert stage_weights(cfg, 25) == pytest.approx((1.0, 0.1, 0.0))
    assert stage_weights(cfg, 55) == pytest.approx((1.0, 0.2, 0.005))
    assert stage_weights(cfg, 99) == pytest.approx((1.0, 0.2, 0.01))


def test_learning_rate_decays_by_cosine_to_its_final_fraction():
    cfg = TrainConfig(steps=100, lr=1e-3, lr_final=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 50) == pytest.approx(0.55e-3)
    assert learning_rate(cfg, 100) == pytest.approx(1e-4)
    assert learning_rate(TrainConfig(steps=100, lr=1e-3), 70) == pytest.approx(1e-3)  # lr_final 1: constant


def test_linear_output_is_raw_in_training_and_clamped_in_use():
    gen = PriorGenerator(PriorConfig(**TINY_PRIOR, output="linear"))
    with torch.no_grad():
        gen.up[-1].bias.fill_(2.0)  # pushes every pixel far above 1
    code = torch.ones(2, 6)
    assert gen.train()(code).min() > 1.0  # the losses see (and can pull back) out-of-range values
    out = gen.eval()(code)
    assert out.max() <= 1.0 and torch.allclose(out, torch.ones_like(out))
    with pytest.raises(ValueError, match="output"):
        PriorConfig(**TINY_PRIOR, output="tanh")


def test_prior_config_checks_its_shape():
    with pytest.raises(ValueError, match="channel entries"):
        PriorConfig(output_size=64, channels=(8, 8))


def test_code_stats_and_bounds():
    codes = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    stats = code_stats(codes)
    assert torch.allclose(stats["mean"], torch.tensor([2.0, 3.0]))
    assert torch.allclose(stats["std"], torch.tensor([2.0, 2.0]))
    gen = PriorGenerator(PriorConfig(**TINY_PRIOR))
    gen.set_code_stats(torch.arange(6.0), torch.full((6,), 0.5), torch.zeros(6))
    assert torch.allclose(gen.upper, torch.arange(6.0) + 1.5) and torch.equal(gen.lower, torch.zeros(6))


def test_training_lowers_the_pixel_loss_and_writes_its_outputs(tiny_setup):
    pool, tmp = tiny_setup
    cfg = config(steps=60, lr=3e-3, feat_start=1.0, adv_start=1.0, sample_every=30)
    trainer = Trainer(cfg, pool, tmp / "run", progress=False)
    trainer.train()
    rows = (tmp / "run" / "log.csv").read_text().splitlines()
    pix = [float(r.split(",")[2]) for r in rows[1:]]
    assert len(pix) == 60
    assert np.mean(pix[-10:]) < 0.7 * np.mean(pix[:10])
    assert json.loads((tmp / "run" / "config.json").read_text())["prior"]["layer"] == "pool"
    assert (tmp / "run" / "samples" / "step000060.png").exists()
    assert "heldout_psnr" in rows[0] and rows[-1].split(",")[10] != ""
    assert (pool / "cache" / "codes_tiny_enc_pool_16px_2v.pt").exists()


def test_a_spatial_layer_sets_the_code_shape(tiny_setup):
    pool, tmp = tiny_setup
    prior = PriorConfig(**{**TINY_PRIOR, "layer": "act2"})  # 6 maps of 16x16 (the encoder resizes views to 32 px), not (6,)
    trainer = Trainer(config(steps=3, prior=prior, comparator_layer="act1"), pool, tmp / "run", progress=False)
    assert trainer.config.prior.code_shape == (6, 16, 16) == tuple(trainer.codes.shape[1:])
    trainer.train()
    assert trainer.gen(trainer.gen.random_code([0])).shape == (1, 3, 16, 16)
    trainer.resume(tmp / "run" / "checkpoint.pt")  # the saved config agrees with the inferred shape


def test_conv_front_trains_on_a_spatial_code_and_exports(tiny_setup):
    pool, tmp = tiny_setup
    # act2 gives 6 maps of 16x16; the conv front keeps them spatial (a 16x16 start map, one doubling to 32 px)
    prior = PriorConfig(**{**TINY_PRIOR, "layer": "act2", "front": "conv", "output_size": 32, "channels": (8, 8)})
    trainer = Trainer(config(steps=40, lr=3e-3, prior=prior, comparator_layer="act1", feat_start=1.0, adv_start=1.0), pool, tmp / "run", progress=False)
    assert trainer.config.prior.code_shape == (6, 16, 16)
    assert not hasattr(trainer.gen, "fc") and trainer.gen.front[0].in_channels == 6
    trainer.train()
    pix = [float(r.split(",")[2]) for r in (tmp / "run" / "log.csv").read_text().splitlines()[1:]]
    assert np.mean(pix[-5:]) < 0.7 * np.mean(pix[:5])
    trainer.export(tmp / "conv.safetensors")
    loaded = load_prior(tmp / "conv.safetensors")
    assert loaded.config.front == "conv"
    code = trainer.gen.clip(trainer.gen.random_code([0]))
    with torch.no_grad():
        assert torch.allclose(loaded(code), trainer.gen.eval()(code), atol=2e-3)


def test_conv_front_sizes_its_start_map_and_checks_its_code():
    # a 7x7 code (EfficientNet's last block at 224 px) starts at 8x8: 128 px is 4 doublings
    cfg = PriorConfig(layer="_blocks.15", code_shape=(320, 7, 7), front="conv", output_size=128, channels=(32, 16, 8, 8, 8))
    assert cfg.start_size == 8
    gen = PriorGenerator(cfg)
    assert gen(gen.random_code([0])).shape == (1, 3, 128, 128)
    assert sum(p.numel() for p in gen.front.parameters()) == 320 * 32 * 9 + 32 + 32 * 32 * 9 + 32  # no fc layer
    with pytest.raises(ValueError, match="channel entries"):
        PriorConfig(code_shape=(320, 7, 7), front="conv", output_size=128, channels=(32, 16, 8))
    with pytest.raises(ValueError, match="spatial code"):
        PriorGenerator(PriorConfig(code_shape=(1280,), front="conv", output_size=16, channels=(8, 8)))
    with pytest.raises(ValueError, match="front"):
        PriorConfig(front="mlp")


def test_resize_upsampling_leaves_no_checkerboard(tmp_path):
    # a constant feature map through resize + 3x3 conv stays constant away from the border; through
    # 4x4 stride-2 up-convolutions it becomes a period-2 pattern (the checkerboard of Odena et al. 2016)
    torch.manual_seed(0)
    interior = {}
    for upsample in ("deconv", "resize"):
        cfg = PriorConfig(code_shape=(8, 4, 4), front="conv", output_size=32, channels=(8, 8, 8, 8), upsample=upsample)
        gen = PriorGenerator(cfg).eval()
        with torch.no_grad():
            for m in gen.up.modules():  # random positive biases: the constant map must not die in a LeakyReLU
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    m.bias.uniform_(0.1, 0.5)
            out = gen.up(torch.ones(1, 8, 4, 4))
        interior[upsample] = out[..., 8:-8, 8:-8].std(dim=(-1, -2)).max().item()
    assert interior["resize"] < 1e-5 < 1e-2 < interior["deconv"]
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in gen.modules())
    path = tmp_path / "resize.safetensors"
    save_prior(gen, path)
    assert load_prior(path).config.upsample == "resize"
    with pytest.raises(ValueError, match="upsample"):
        PriorConfig(upsample="pixelshuffle")


def test_trains_from_a_packed_pool(tiny_setup):
    from dgnam.pool.store import pack_pool

    pool, tmp = tiny_setup
    pack_pool(pool, tmp / "pool.npz", size=16, max_mib=1.0, progress=False)
    trainer = Trainer(config(steps=2), tmp / "pool.npz", tmp / "run", progress=False)
    assert len(trainer.held_rows) == 6 and trainer.views.shape[-1] == 16
    trainer.train()
    assert (tmp / "run" / "cache" / "codes_tiny_enc_pool_16px_2v.pt").exists()  # codes cached beside the run, not the file


def test_gradient_clipping_bounds_the_update(tiny_setup):
    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=2, grad_clip=1e-3), pool, tmp / "run", progress=False)
    x, y = trainer.batch()
    (trainer.gen(y) - x).pow(2).mean().mul(100).backward()
    before = clip_gradients(trainer.gen, trainer.config.grad_clip)
    after = torch.cat([p.grad.flatten() for p in trainer.gen.parameters() if p.grad is not None]).norm()
    assert before > 1e-2 and after == pytest.approx(1e-3, rel=1e-3)
    logs = trainer.train_step(x, y)
    assert logs["grad_norm"] > 1e-3  # the norm before clipping is logged


def test_resume_continues_exactly(tiny_setup):
    pool, tmp = tiny_setup
    straight = Trainer(config(steps=8), pool, tmp / "a", progress=False)
    straight.train()
    first = Trainer(config(steps=8), pool, tmp / "b", progress=False)
    interrupt_at(first, 4)
    first.train()
    second = Trainer(config(steps=8), pool, tmp / "b", progress=False)
    second.resume(tmp / "b" / "checkpoint.pt")
    assert second.step == 4
    assert second.opt_g.state_dict()["state"][0]["step"] == 4  # Adam's moments came back too
    second.train()
    for (k, a), b in zip(straight.gen.state_dict().items(), second.gen.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    for (k, a), b in zip(straight.disc.state_dict().items(), second.disc.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert len((tmp / "b" / "log.csv").read_text().splitlines()) == 9


def test_export_every_writes_the_generator_of_that_step(tiny_setup):
    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=6, export_every=3), pool, tmp / "run", progress=False)
    trainer.train()
    assert sorted(p.name for p in (tmp / "run" / "priors").iterdir()) == ["step000003.safetensors", "step000006.safetensors"]
    stopped = Trainer(config(steps=6), pool, tmp / "until", progress=False)
    stopped.train(until=3)  # same schedule, stopped at step 3
    mid, last = load_prior(tmp / "run" / "priors" / "step000003.safetensors"), load_prior(tmp / "run" / "priors" / "step000006.safetensors")
    code = stopped.gen.clip(stopped.gen.random_code([0]))
    with torch.no_grad():
        assert torch.allclose(mid(code), stopped.gen.eval()(code), atol=2e-3)
        assert not torch.allclose(mid(code), last(code), atol=2e-3)


def test_interrupt_saves_a_checkpoint(tiny_setup):
    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=8), pool, tmp / "run", progress=False)
    interrupt_at(trainer, 3)
    trainer.train()
    assert torch.load(tmp / "run" / "checkpoint.pt", weights_only=True)["step"] == 3
    assert load_trained(tmp / "run" / "checkpoint.pt").code_shape == (6,)


class _Payload:
    """A pickled object whose unpickling would run code (here: write a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tiny_setup):
    from dgnam.cli import main

    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=2), pool, tmp / "run", progress=False)
    trainer.train()
    state = torch.load(tmp / "run" / "checkpoint.pt", weights_only=True)
    marker = tmp / "pwned"
    state["extra"] = _Payload(marker)
    torch.save(state, tmp / "run" / "checkpoint.pt")
    with pytest.raises(dgnam.WeightsError, match=r"checkpoint .*checkpoint.pt cannot be read safely"):
        Trainer(config(steps=2), pool, tmp / "run", progress=False).resume(tmp / "run" / "checkpoint.pt")
    with pytest.raises(dgnam.WeightsError, match="cannot be read safely"):
        load_trained(tmp / "run" / "checkpoint.pt")
    assert not marker.exists()
    (tmp / "cfg.json").write_text(json.dumps({"prior": TINY_PRIOR, "comparator_layer": "conv1", "steps": 2, "batch_size": 8, "views": 2}))
    assert main(["train-generator", "--config", str(tmp / "cfg.json"), "--pool", str(pool), "--out", str(tmp / "run"), "--resume", "--quiet"]) == 2
    assert not marker.exists()


def test_export_round_trip(tiny_setup):
    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=2), pool, tmp / "run", progress=False)
    trainer.train()
    sha = trainer.export(tmp / "prior.safetensors")
    assert sha == dgnam.infra.hub.sha256_file(tmp / "prior.safetensors")
    assert all(trainer.export(tmp / f"again{i}.safetensors") == sha for i in range(3))  # byte-identical exports
    loaded = dgnam.load_generator(str(tmp / "prior.safetensors"))
    code = trainer.gen.clip(trainer.gen.random_code([0, 1]))
    with torch.no_grad():
        assert torch.allclose(loaded(code), trainer.gen.eval()(code), atol=2e-3)  # fp16 weights
    assert torch.allclose(loaded.upper, trainer.gen.upper)
    with pytest.raises(dgnam.WeightsError, match="not a dgnam prior|cannot read"):
        (tmp / "bad.safetensors").write_bytes(b"nonsense")
        load_prior(tmp / "bad.safetensors")


def test_a_prior_carries_its_measured_dgn_am_settings(tiny_setup):
    from dgnam.generators.prior import save_prior
    from dgnam.methods.dgn_am import dgnam_config

    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=1), pool, tmp / "run", progress=False)
    save_prior(trainer.gen, tmp / "tuned.safetensors", {"dgn_am": {"lr_start": 0.5, "decay": 0.98}})
    gen = load_prior(tmp / "tuned.safetensors")
    assert gen.dgn_am == {"lr_start": 0.5, "decay": 0.98}
    cfg = dgnam_config(gen, steps=20, decay=None)  # the caller's settings win; None leaves the prior's
    assert (cfg.lr_start, cfg.decay, cfg.steps) == (0.5, 0.98, 20)
    assert dgnam_config(gen, lr_start=2.0).lr_start == 2.0
    assert dgnam_config(None).lr_start == dgnam.DGNAMConfig().lr_start == 8.0  # no generator: the paper's
    assert dgnam_config(load_prior(tmp / "tuned.safetensors")).lr_start == 0.5
    gen.dgn_am = {"learning_rate": 1.0}
    with pytest.raises(ValueError, match="unknown setting"):
        dgnam_config(gen)
    # the command line: the prior's step unless --lr-start is given
    from dgnam import cli

    for flags, expected in (([], 0.5), (["--lr-start", "2"], 2.0)):
        out = tmp / f"vis{len(flags)}"
        assert cli.main(["visualize", "--net", "tiny_enc", "--generator", str(tmp / "tuned.safetensors"), "--unit", "logits:1",
                         "--steps", "2", "--out", str(out), "--quiet", *flags]) == 0
        record = json.loads((out / "results.json").read_text())
        assert record["batches"][0]["config"]["lr_start"] == expected


def test_registered_prior_loads_from_its_own_file(tiny_setup, monkeypatch):
    """A registry entry without a builder: the safetensors file carries config and statistics."""
    from dgnam.generators import GeneratorSpec
    from dgnam.generators.catalog import _ensure_builtin
    from dgnam.generators.spec import _REGISTRY
    from dgnam.methods.choose import default_generator

    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=2), pool, tmp / "run", progress=False)
    trainer.train()
    sha = trainer.export(tmp / "home" / "weights" / "tiny_prior.safetensors")
    _ensure_builtin()
    spec = GeneratorSpec("tiny_prior", None, WeightSource("tiny_prior.safetensors", sha256=sha), encoder="tiny_enc:pool", default=True)
    monkeypatch.setitem(_REGISTRY, "tiny_prior", spec)
    gen = dgnam.load_generator("tiny_prior")
    code = trainer.gen.clip(trainer.gen.random_code([3]))
    with torch.no_grad():
        assert torch.allclose(gen(code), trainer.gen.eval()(code), atol=2e-3)
    assert default_generator("tiny_enc") == "tiny_prior"
    monkeypatch.setitem(_REGISTRY, "tiny_prior", GeneratorSpec("tiny_prior", None, WeightSource("tiny_prior.safetensors", sha256="0" * 64)))
    with pytest.raises(dgnam.WeightsError, match="sha256|hash"):
        dgnam.load_generator("tiny_prior")


def _ddp_worker(rank, world, port, pool, out, home):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), DGNAM_HOME=home)
    torch.set_num_threads(1)
    import dgnam.nets as nets

    nets.catalog._ensure_builtin()
    nets.spec._REGISTRY["tiny_enc"] = NetSpec("tiny_enc", TinyNet, WeightSource("tiny_enc.pth"), InputSpec(size=(32, 32), min_size=8))
    trainer = Trainer(config(steps=6), pool, out, progress=False)
    trainer.train()
    torch.save(trainer.gen.state_dict(), out / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_ddp_matches_one_process(tiny_setup):
    """torchrun-style DDP with gloo: 2 processes with half batches each = 1 process with the whole batch."""
    import socket

    import torch.multiprocessing as mp

    pool, tmp = tiny_setup
    Trainer(config(steps=1), pool, tmp / "warm", progress=False)  # encodes and caches the codes once
    single = Trainer(config(steps=6), pool, tmp / "single", progress=False)
    single.train()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    (tmp / "ddp").mkdir()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, pool, tmp / "ddp", os.environ["DGNAM_HOME"])) for r in range(2)]
    for p in procs:
        p.start()
    assert join_or_kill(procs, 180) == [0, 0]
    states = [torch.load(tmp / "ddp" / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in single.gen.state_dict().items():
        assert torch.allclose(states[0][key], states[1][key], atol=1e-6), key  # ranks agree
        assert torch.allclose(states[0][key], value, atol=1e-4), key  # and equal the single process


def _ship_script():
    """scripts/ship_prior.py as a module."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ship_prior", Path(__file__).resolve().parents[1] / "scripts" / "ship_prior.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    return ship


def test_ship_script_writes_a_prior_and_its_card(tiny_setup):
    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=4, sample_every=2), pool, tmp / "run", progress=False)
    trainer.train()
    ship = _ship_script()
    out = tmp / "data"
    out.mkdir()
    assert ship.main([str(tmp / "run"), "tiny_prior", "--pool", str(pool), "--out-dir", str(out), "--dgn-am", '{"lr_start": 0.05}']) == 0
    card = (out / "tiny_prior.md").read_text()
    sha = dgnam.infra.hub.sha256_file(out / "tiny_prior.safetensors")
    assert sha in card and "40 images" in card and "PSNR" in card and '{"lr_start": 0.05}' in card
    gen = load_prior(out / "tiny_prior.safetensors")
    assert gen.dgn_am == {"lr_start": 0.05}
    code = trainer.gen.clip(trainer.gen.random_code([0]))
    with torch.no_grad():
        assert torch.allclose(gen(code), trainer.gen.eval()(code), atol=2e-3)


def test_ship_script_adds_up_the_time_of_resumed_segments():
    ship = _ship_script()
    rows = [{"seconds": s} for s in ("1.0", "2.5", "4.0", "0.5", "3.0", "1.0", "2.0")]  # two resumes
    assert ship.train_time(rows) == (4.0 + 3.0 + 2.0, 3)
    assert ship.train_time(rows[:3]) == (4.0, 1)


def test_conv_front_starts_at_the_codes_own_side_when_the_output_is_a_power_of_two_multiple():
    # 14x14 (_blocks.7 at 224 px) -> 224 px: four doublings from 14, no resize of the code's map
    cfg = PriorConfig(layer="_blocks.7", code_shape=(80, 14, 14), front="conv", output_size=224, channels=(16, 8, 8, 8, 8), upsample="resize")
    assert cfg.start_size == 14
    assert PriorGenerator(cfg)(torch.zeros(1, 80, 14, 14)).shape == (1, 3, 224, 224)
    # the shipped 128-px prior's layout is unchanged: 14x14 -> 16x16 -> 128 px
    assert PriorConfig(layer="_blocks.7", code_shape=(80, 14, 14), front="conv", output_size=128, channels=(16, 8, 8, 8)).start_size == 16


def test_patch_discriminator_gives_a_logit_per_code_cell_and_each_part_weighs_the_same():
    from dgnam.train.trainer import PatchDiscriminator, gan_loss, make_discriminator

    d = PatchDiscriminator((6, 16, 16))
    g, p = d(torch.rand(2, 3, 64, 64), torch.randn(2, 6, 16, 16))
    assert g.shape == (2,) and p.shape == (2, 256)
    logits = (torch.zeros(2), torch.full((2, 256), 50.0))  # the global part says 'real' weakly, the patches strongly
    assert gan_loss(logits, True).item() == pytest.approx(np.log(2) / 2, abs=1e-6)
    assert gan_loss(torch.zeros(3), False).item() == pytest.approx(np.log(2), abs=1e-6)
    with pytest.raises(ValueError, match="spatial code"):
        make_discriminator(config(disc="patch"))  # TINY_PRIOR's code is a vector
    with pytest.raises(ValueError, match="disc must be"):
        make_discriminator(config(disc="multi"))


def test_warm_start_from_a_half_size_prior_starts_near_its_quality(tiny_setup):
    pool, tmp = tiny_setup
    small = PriorConfig(**{**TINY_PRIOR, "layer": "act2", "front": "conv", "output_size": 32, "channels": (8, 8), "output": "linear", "upsample": "resize"})
    source = Trainer(config(steps=60, lr=3e-3, prior=small, comparator_layer="act1", feat_start=1.0, adv_start=1.0), pool, tmp / "src", progress=False)
    source.train()
    source.export(tmp / "src.safetensors")
    big = PriorConfig(**{**TINY_PRIOR, "layer": "act2", "front": "conv", "output_size": 64, "channels": (8, 8, 8), "output": "linear", "upsample": "resize"})
    common = dict(prior=big, comparator_layer="act1", disc="patch", feat_start=0.0, adv_start=0.0, ramp=0.01, steps=4)
    fresh = Trainer(config(**common), pool, tmp / "fresh", progress=False)
    warm = Trainer(config(init_from=str(tmp / "src.safetensors"), **common), pool, tmp / "warm", progress=False)
    assert warm.warm == {"copied": 8, "identity": 1, "fresh": 0}  # front (2 convs), 2 up-convs, the RGB conv; the new 8->8 conv
    assert warm.heldout_metrics()["heldout_psnr"] > fresh.heldout_metrics()["heldout_psnr"] + 3
    warm.train()  # every loss on, the patch discriminator included
    rows = (tmp / "warm" / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert all(float(r.split(",")[header.index("loss_d")]) > 0 for r in rows[2:])  # D trains from step 1 (the ramp starts at 0)


def _photo_like(n=4, size=64, seed=0):
    """Images with a photo's 1/f^2 power spectrum (random phases), in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    f = torch.hypot(*torch.meshgrid(torch.fft.fftfreq(size), torch.fft.fftfreq(size), indexing="ij")).clamp_min(1 / size)
    spectrum = torch.randn(n, 3, size, size, dtype=torch.complex64, generator=g) / f
    x = torch.fft.ifft2(spectrum).real
    return (x - x.amin((2, 3), keepdim=True)) / (x.amax((2, 3), keepdim=True) - x.amin((2, 3), keepdim=True))


def test_spectral_loss_is_zero_for_the_photo_and_grows_with_blur():
    from dgnam.train.trainer import spectral_loss

    x = _photo_like()
    blur = lambda k: torch.nn.functional.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)  # noqa: E731
    assert spectral_loss(x, x).item() == 0.0
    assert 0.05 < spectral_loss(blur(3), x).item() < spectral_loss(blur(5), x).item()


def test_spectral_loss_gradient_brings_back_the_power_blur_took():
    from dgnam.eval.metrics import spectrum_slope
    from dgnam.train.trainer import spectral_loss

    x = _photo_like()
    fake = torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False).clone().requires_grad_(True)
    before = float(np.median(spectrum_slope(fake.detach())))
    opt = torch.optim.Adam([fake], lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        spectral_loss(fake, x).backward()
        opt.step()
    after = float(np.median(spectrum_slope(fake.detach())))
    target = float(np.median(spectrum_slope(x)))
    assert before < target - 0.5  # the blur steepened the slope
    assert abs(after - target) < 0.5 * abs(before - target)


def test_spectral_weight_adds_its_term_and_logs_it_with_the_heldout_slope(tiny_setup):
    pool, tmp = tiny_setup
    trainer = Trainer(config(steps=4, w_spec=0.5, sample_every=4), pool, tmp / "run", progress=False)
    x, y = trainer.batch()
    assert "spec" not in Trainer(config(steps=4), pool, tmp / "off", progress=False).train_step(x, y)
    assert trainer.train_step(x, y)["spec"] > 0
    trainer.train()
    import csv

    rows = list(csv.DictReader((tmp / "run" / "log.csv").open()))
    assert float(rows[-1]["spec"]) > 0 and np.isfinite(float(rows[-1]["heldout_slope"]))  # a 16-px untrained G: any slope


def test_a_log_begun_by_an_older_version_keeps_its_columns(tiny_setup):
    import csv

    pool, tmp = tiny_setup
    (tmp / "run").mkdir()
    old = ["step", "seconds", "pix", "feat", "adv", "loss_g", "loss_d", "w_pix", "w_feat", "w_adv", "lr", "grad_norm", "heldout_psnr", "heldout_code_cos"]
    (tmp / "run" / "log.csv").write_text(",".join(old) + "\n")
    Trainer(config(steps=4, sample_every=2), pool, tmp / "run", progress=False).train()
    rows = list(csv.reader((tmp / "run" / "log.csv").open()))
    assert rows[0] == old and all(len(r) == len(old) for r in rows)
    assert float(rows[2][old.index("heldout_psnr")]) > 0
