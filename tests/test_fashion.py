"""The Fashion-MNIST reproduction (`dgnam repro fashion-mnist`), end to end on a synthetic 10-class
shape set with tiny budgets: no Debian package, no download."""

import gzip
import json
import struct
from dataclasses import replace

import numpy as np
import pytest
import torch

import dgnam
from dgnam.cli.parser import build_parser
from dgnam.cli.repro import repro_config
from dgnam.pool import DebPackage
from dgnam.repro.fashion import CLASSES, IDX_DIR, IDX_FILES, ReproConfig, load_fashion_mnist, load_fashion_net, read_idx, run_repro, synthetic_shapes, to_tensor
from dgnam.repro.fashion_am import METHODS, AMConfig, GeneratorConfig, build_generator
from dgnam.repro.fashion_nets import SIZE, FashionCNN, FashionMLP, NetConfig, TinyResNet

TINY = ReproConfig(
    classifier=NetConfig("cnn", seed=0, epochs=3, batch_size=32),
    judges=(NetConfig("mlp", seed=1, epochs=4, batch_size=32), NetConfig("resnet", seed=2, epochs=2, batch_size=32)),
    generator=GeneratorConfig(steps=150, batch_size=16, lr=2e-3, fc_width=128, channels=(32, 32, 16, 8)),
    am=AMConfig(seeds=(0, 1), steps=24),
    reference_images=100,
)


@pytest.fixture(scope="module")
def data():
    return synthetic_shapes(n_train=600, n_test=200, seed=0)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fashion")
    return out, run_repro(data, out, TINY)


def test_classifier_and_judges_learn_the_shapes(run):
    nets = run[1]["nets"]
    assert nets["classifier"]["test_accuracy"] > 0.6  # chance is 0.1
    assert nets["judge_mlp"]["test_accuracy"] > 0.3
    assert nets["judge_resnet"]["test_accuracy"] > 0.3
    assert not any(net["reused"] for net in nets.values())


def test_generator_inverts_the_code_and_has_the_papers_bounds(run):
    out, record = run
    gen = dgnam.load_generator(str(out / "models" / "generator.safetensors"))
    assert isinstance(gen, dgnam.Generator) and gen.output_size == (SIZE, SIZE)
    assert torch.all(gen.lower == 0)  # ReLU codes: the lower bound is 0
    assert torch.allclose(gen.upper, gen.code_mean + 3 * gen.code_std)
    assert record["generator"]["heldout_code_cos"] > 0.5


def test_dgn_am_raises_the_class_logit_for_most_classes(run):
    items = run[1]["methods"]["dgn-am"]["items"]
    raised = [np.mean([it["logit_final"] for it in items if it["class"] == c]) > np.mean([it["logit_start"] for it in items if it["class"] == c]) for c in range(10)]
    assert sum(raised) >= 7
    assert run[1]["methods"]["dgn-am"]["judging"]["top1"]["classifier"] > 0.3


def test_results_json_has_every_method_judged_and_checked(run):
    out, record = run
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["methods"]) == list(METHODS)
    for method, m in saved["methods"].items():
        assert set(m["judging"]["top1"]) == {"classifier", "judge_mlp", "judge_resnet"}
        assert len(m["items"]) == 20  # 10 classes x 2 seeds
        item = m["items"][0]
        assert len(item["nn_pixel"]) == TINY.neighbours and len(item["nn_code"]) == TINY.neighbours
        assert item["nn_pixel"][0]["rms"] <= item["nn_pixel"][-1]["rms"]
        assert isinstance(item["near_copy"], bool)
        assert (out / f"sheet_{method}.png").is_file()
        assert np.isfinite(m["judging"]["diversity"]["pixels"])
    # the pixel baseline fools its own target, not the judges; that is what the judges are for
    assert saved["methods"]["pixel"]["judging"]["top1"]["classifier"] >= 0.9
    assert saved["config"]["am"]["steps"] == 24 and saved["timings_s"]["synthesis"] > 0
    for name in ("neighbours.png", "reconstructions.png", "summary.md", "models/classifier.safetensors", "models/judge_mlp.safetensors"):
        assert (out / name).is_file(), name
    assert "| dgn-am |" in (out / "summary.md").read_text()


def test_summary_tables_have_as_many_cells_in_every_row(run):
    out, _ = run
    tables, current = [], []
    for line in (out / "summary.md").read_text().splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) == 2  # nets, then methods
    for table in tables:
        cells = [len(row.strip().strip("|").split("|")) for row in table]
        assert len(set(cells)) == 1, (cells, table[:2])
        assert set(table[1].replace("|", "").split()) <= {"---", "---:"}  # the separator row
    assert len(tables[1]) == 2 + len(METHODS) and tables[1][0].count("| judge ") == 2


def test_reuse_skips_training_retrains_what_changed_and_reproduces_the_images(run, data):
    out, first = run
    changed = replace(TINY.with_budget(methods=("dgn-am", "pixel")), judges=(TINY.judges[0], replace(TINY.judges[1], seed=5, epochs=1)))
    again = run_repro(data, out, changed, reuse=True)
    assert again["nets"]["classifier"]["reused"] and again["nets"]["judge_mlp"]["reused"] and again["generator"]["reused"]
    assert not again["nets"]["judge_resnet"]["reused"]  # another seed: trained again
    for method in ("dgn-am", "pixel"):  # the target and the generator are the same, so are the images
        assert [it["logit_final"] for it in again["methods"][method]["items"]] == [it["logit_final"] for it in first["methods"][method]["items"]]
    model, config, norm, meta = load_fashion_net(out / "models" / "classifier.safetensors")
    assert config == TINY.classifier and meta["data"] == data.identity()
    assert norm.input_spec().size == (SIZE, SIZE)


def test_nets_read_rgb_as_its_grey_mean():
    x = torch.rand(2, 1, SIZE, SIZE)
    rgb = torch.cat([x * 0.5, x, x * 1.5], 1)  # channel mean == x
    for arch in (FashionCNN, FashionMLP, TinyResNet):
        net = arch().eval()
        assert torch.allclose(net(rgb), net(x), atol=1e-5), arch.__name__


def test_generator_bounds_come_from_the_codes():
    codes = torch.relu(torch.randn(500, 12) * torch.linspace(0.5, 2, 12))
    gen = build_generator(GeneratorConfig(fc_width=16, channels=(8, 8, 8, 8)), codes)
    assert torch.all(gen.lower == 0)
    assert torch.allclose(gen.upper, codes.mean(0) + 3 * codes.std(0), rtol=1e-4)
    assert gen(gen.random_code([0, 1])).shape == (2, 3, SIZE, SIZE)


def test_dead_code_units_get_no_gradient():
    # a unit that never fired in the data would otherwise get a 1e6-fold gradient (its std is floored
    # at 1e-6) and DGN-AM's step, normalized by mean |g|, would leave every live unit where it was
    codes = torch.relu(torch.randn(200, 6, generator=torch.Generator().manual_seed(0)))
    codes[:, :2] = 0
    gen = build_generator(GeneratorConfig(fc_width=16, channels=(8, 8, 8, 8)), codes)
    code = gen.random_code([0]).requires_grad_(True)
    gen(code).sum().backward()
    assert torch.all(code.grad[0, :2] == 0) and torch.all(code.grad[0, 2:] != 0)
    assert torch.all(gen.upper[:2] < 1e-5)  # and they cannot move either


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_roundtrip_and_errors(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28) % 256
    write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), images)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="holds 3"):
        read_idx(tmp_path / "short")


def test_load_fashion_mnist_reads_the_packages_layout(tmp_path):
    folder = tmp_path / "root" / IDX_DIR
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for key, name in IDX_FILES.items():
        n = 30 if key.startswith("train") else 10
        write_idx(folder / name, rng.integers(0, 256, (n, 28, 28)) if key.endswith("x") else np.arange(n) % 10)
    fetched = []

    def fetch(package, cache_dir):
        fetched.append((package, cache_dir))
        return DebPackage(package, "1.0", tmp_path / "root")

    data = load_fashion_mnist(tmp_path / "cache", fetch=fetch)
    assert fetched == [("dataset-fashion-mnist", tmp_path / "cache")]
    assert data.train_x.shape == (30, 28, 28) and data.test_y.tolist() == list(range(10))
    assert data.classes == CLASSES and data.source["version"] == "1.0"
    assert to_tensor(data.train_x).shape == (30, 1, SIZE, SIZE)
    (folder / IDX_FILES["test_y"]).unlink()
    with pytest.raises(RuntimeError, match="t10k-labels"):
        load_fashion_mnist(tmp_path / "cache", fetch=fetch)


def test_cli_flags_set_the_budget():
    args = build_parser().parse_args(["repro", "fashion-mnist", "--out", "x", "--epochs", "0.5", "--generator-steps", "300",
                                      "--seeds", "0-3", "--methods", "dgn-am,fourier", "--am-steps", "50"])
    config = repro_config(args)
    assert config.classifier.epochs == 0.5 and config.judges[0].epochs == 1  # the MLP keeps twice the classifier's
    assert config.generator.steps == 300 and config.am.seeds == (0, 1, 2, 3) and config.am.steps == 50
    assert config.am.methods == ("dgn-am", "fourier")
    assert ReproConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown method"):
        AMConfig(methods=("dgn-am", "magic"))
