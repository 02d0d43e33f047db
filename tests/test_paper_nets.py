"""The paper's own networks: DeePSiM generators and CaffeNet, checked without downloads.

Published key names and shapes are typed here from the Caffe prototxts (not read from our modules),
state dicts with those keys load strictly, and every forward pass is compared with a NumPy
re-implementation of Caffe's layers written below (Deconvolution as col2im, grouped convolution by
splitting channels, LRN and ceil-mode pooling by their Caffe formulas).
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

import dgnam
from dgnam.generators.spec import _REGISTRY as GEN_REGISTRY
from dgnam.generators import get_generator_spec, load_generator
from dgnam.generators.deepsim import BOUNDS_SOURCES, DeePSiMGenerator, read_bounds
from dgnam.core.hooks import capture
from dgnam.infra.hub import WeightsError, dgnam_home, load_strict, sha256_file
from dgnam.nets import Target, get_net_spec, list_nets, load_net
from dgnam.nets.caffenet import CaffeNet, convert_state_dict
from dgnam.methods.presets import PAPER_PRESET, get_preset

# ---------------------------------------------------------------------------------------------
# Published key names and shapes (from nets/upconv/*/generator.prototxt and caffenet.prototxt).
# Deconvolution weights are (in, out, k, k); Convolution and InnerProduct weights (out, in, ...).
# ---------------------------------------------------------------------------------------------

_BACK = [  # (name, in, out, k, stride, pad) of the up-convolutional back end
    ("deconv5", None, 256, 4, 2, 1),
    ("conv5_1", 256, 512, 3, 1, 1),
    ("deconv4", 512, 256, 4, 2, 1),
    ("conv4_1", 256, 256, 3, 1, 1),
    ("deconv3", 256, 128, 4, 2, 1),
    ("conv3_1", 128, 128, 3, 1, 1),
    ("deconv2", 128, 64, 4, 2, 1),
    ("deconv1", 64, 32, 4, 2, 1),
    ("deconv0", 32, 3, 4, 2, 1),
]


def published_generator_shapes(layer: str) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    if layer == "pool5":
        for name, cin, cout in (("Rconv6", 256, 512), ("Rconv7", 512, 512), ("Rconv8", 512, 512)):
            shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, 3, 3), (cout,)
        first_in = 512
    else:
        code = 1000 if layer == "fc8" else 4096
        for name, cin in (("defc7", code), ("defc6", 4096), ("defc5", 4096)):
            shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (4096, cin), (4096,)
        first_in = 256
    for name, cin, cout, k, _, _ in _BACK:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cin or first_in, cout, k, k), (cout,)
    return shapes


CAFFENET_SHAPES = {
    "conv1.weight": (96, 3, 11, 11), "conv1.bias": (96,),
    "conv2.weight": (256, 48, 5, 5), "conv2.bias": (256,),
    "conv3.weight": (384, 256, 3, 3), "conv3.bias": (384,),
    "conv4.weight": (384, 192, 3, 3), "conv4.bias": (384,),
    "conv5.weight": (256, 192, 3, 3), "conv5.bias": (256,),
    "fc6.weight": (4096, 9216), "fc6.bias": (4096,),
    "fc7.weight": (4096, 4096), "fc7.bias": (4096,),
    "fc8.weight": (1000, 4096), "fc8.bias": (1000,),
}

TRANSPOSED = {name for name, *_ in _BACK}


def random_state(shapes: dict[str, tuple[int, ...]], seed: int, out_gain: float = 1.0) -> dict[str, torch.Tensor]:
    """Small random weights that keep activations of order one (and the image of order 100)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        name = key.split(".")[0]
        if key.endswith("bias"):
            state[key] = torch.randn(shape, generator=g) * 0.1
            continue
        if name in TRANSPOSED:  # each output pixel sees in * (k / stride)^2 inputs
            stride = 2 if shape[2] == 4 else 1
            fan = shape[0] * (shape[2] // stride) ** 2
        else:
            fan = math.prod(shape[1:])
        state[key] = torch.randn(shape, generator=g) * (1.4 / math.sqrt(fan))
    last = list(shapes)[-2]  # the last weight: scale the output
    state[last] = state[last] * out_gain
    return state


# ---------------------------------------------------------------------------------------------
# NumPy reference implementations of Caffe's layers (float64).
# ---------------------------------------------------------------------------------------------


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def ref_linear(x, w, b):
    return x @ w.T + b


def ref_leaky(x, slope=0.3):
    return np.where(x > 0, x, slope * x)


def ref_deconv(x, w, b, stride, pad):
    """Caffe Deconvolution: scatter every input pixel times the kernel (col2im), then crop ``pad``."""
    n, _, h, wd = x.shape
    _, cout, k, _ = w.shape
    full = np.zeros((n, cout, (h - 1) * stride + k, (wd - 1) * stride + k))
    for ky in range(k):
        for kx in range(k):
            contrib = np.einsum("nchw,co->nohw", x, w[:, :, ky, kx], optimize=True)
            full[:, :, ky : ky + (h - 1) * stride + 1 : stride, kx : kx + (wd - 1) * stride + 1 : stride] += contrib
    out = full[:, :, pad : full.shape[2] - pad, pad : full.shape[3] - pad]
    return out + b[None, :, None, None]


def ref_conv(x, w, b, stride=1, pad=0, groups=1):
    """Caffe Convolution; groups by splitting the channels by hand."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    cout, cin_g, k, _ = w.shape
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((n, cout, ho, wo))
    og = cout // groups
    for gi in range(groups):
        xs, ws = x[:, gi * cin_g : (gi + 1) * cin_g], w[gi * og : (gi + 1) * og]
        for ky in range(k):
            for kx in range(k):
                patch = xs[:, :, ky : ky + stride * (ho - 1) + 1 : stride, kx : kx + stride * (wo - 1) + 1 : stride]
                out[:, gi * og : (gi + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, ky, kx], optimize=True)
    return out + b[None, :, None, None]


def ref_maxpool(x, k=3, s=2):
    """Caffe MAX pooling: output size rounded up, windows cut at the border."""
    _, _, h, w = x.shape
    ho, wo = int(math.ceil((h - k) / s)) + 1, int(math.ceil((w - k) / s)) + 1
    out = np.empty(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * s : min(i * s + k, h), j * s : min(j * s + k, w)].max(axis=(2, 3))
    return out


def ref_lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe LRN across channels: x / (k + alpha / size * sum of squares over the window) ** beta."""
    c = x.shape[1]
    sq = np.pad(x**2, ((0, 0), (size // 2, size // 2), (0, 0), (0, 0)))
    window = sum(sq[:, i : i + c] for i in range(size))
    return x / (k + alpha / size * window) ** beta


def ref_generator_raw(state: dict[str, torch.Tensor], layer: str, code: np.ndarray) -> np.ndarray:
    p = {k: np_(v) for k, v in state.items()}
    x = code
    if layer == "pool5":
        for name, pad in (("Rconv6", 1), ("Rconv7", 1), ("Rconv8", 0)):
            x = ref_leaky(ref_conv(x, p[f"{name}.weight"], p[f"{name}.bias"], pad=pad))
    else:
        for name in ("defc7", "defc6", "defc5"):
            x = ref_leaky(ref_linear(x, p[f"{name}.weight"], p[f"{name}.bias"]))
        x = x.reshape(-1, 256, 4, 4)
    for name, _, _, _, stride, pad in _BACK:
        x = ref_deconv(x, p[f"{name}.weight"], p[f"{name}.bias"], stride, pad)
        if name != "deconv0":
            x = ref_leaky(x)
    return x


def ref_decode(raw: np.ndarray) -> np.ndarray:
    rgb = raw[:, ::-1] + np.array([123.0, 117.0, 104.0])[None, :, None, None]
    return np.clip(rgb / 255.0, 0.0, 1.0)


def ref_caffenet(state: dict[str, torch.Tensor], data: np.ndarray) -> dict[str, np.ndarray]:
    """Blobs of the CaffeNet deploy net; ``conv5``/``fc6``/``fc7`` before their (in-place) ReLU."""
    p = {k: np_(v) for k, v in state.items()}
    blobs = {}
    x = ref_conv(data, p["conv1.weight"], p["conv1.bias"], stride=4)
    x = ref_lrn(ref_maxpool(np.maximum(x, 0)))
    x = ref_conv(x, p["conv2.weight"], p["conv2.bias"], pad=2, groups=2)
    x = ref_lrn(ref_maxpool(np.maximum(x, 0)))
    x = np.maximum(ref_conv(x, p["conv3.weight"], p["conv3.bias"], pad=1), 0)
    x = np.maximum(ref_conv(x, p["conv4.weight"], p["conv4.bias"], pad=1, groups=2), 0)
    blobs["conv5"] = x = ref_conv(x, p["conv5.weight"], p["conv5.bias"], pad=1, groups=2)
    blobs["pool5"] = x = ref_maxpool(np.maximum(x, 0))
    blobs["fc6"] = x = ref_linear(x.reshape(len(x), -1), p["fc6.weight"], p["fc6.bias"])
    blobs["fc7"] = x = ref_linear(np.maximum(x, 0), p["fc7.weight"], p["fc7.bias"])
    blobs["fc8"] = ref_linear(np.maximum(x, 0), p["fc8.weight"], p["fc8.bias"])
    return blobs


def assert_close(ours: torch.Tensor, ref: np.ndarray, rel: float = 1e-4):
    ours = np_(ours)
    assert ours.shape == ref.shape
    scale = max(np.abs(ref).max(), 1e-12)
    err = np.abs(ours - ref).max() / scale
    assert err < rel, f"max error {err:.2e} of the reference's scale {scale:.3g}"


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache: nothing is found offline."""
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def caffenet_weights():
    return random_state(CAFFENET_SHAPES, seed=7)


@pytest.fixture(scope="module")
def caffenet(caffenet_weights):
    net = CaffeNet().eval()
    load_strict(net, caffenet_weights, what="caffenet")
    return net


@pytest.fixture(scope="module")
def pool5_generator():
    state = random_state(published_generator_shapes("pool5"), seed=5, out_gain=60.0)
    gen = DeePSiMGenerator("pool5").eval()
    load_strict(gen, state, what="deepsim_pool5")
    return gen, state


# ---------------------------------------------------------------------------------------------
# Strict loading of the published layouts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["fc6", "fc7", "fc8", "pool5"])
def test_generator_keys_are_the_published_ones(layer):
    gen = DeePSiMGenerator(layer)
    expected = published_generator_shapes(layer)
    assert {k: tuple(v.shape) for k, v in gen.state_dict().items()} == expected
    assert list(gen.state_dict()) == list(expected)  # same order as the prototxt
    load_strict(gen, {k: torch.zeros(s) for k, s in expected.items()}, what=layer)
    assert gen.code_shape == {"fc6": (4096,), "fc7": (4096,), "fc8": (1000,), "pool5": (256, 6, 6)}[layer]


def test_caffenet_keys_are_the_published_ones(caffenet):
    assert {k: tuple(v.shape) for k, v in caffenet.state_dict().items()} == CAFFENET_SHAPES


def test_missing_unexpected_and_misshapen_keys_are_named(pool5_generator, caffenet_weights):
    gen, state = pool5_generator
    missing = {k: v for k, v in state.items() if k != "deconv3.bias"}
    with pytest.raises(WeightsError, match=r"missing 1 key\(s\): 'deconv3.bias'"):
        load_strict(DeePSiMGenerator("pool5"), missing, what="deepsim_pool5")
    renamed = {k.replace("Rconv6.", "Rconv6.1."): v for k, v in state.items()}
    with pytest.raises(WeightsError, match=r"unexpected 2 key\(s\): 'Rconv6.1.weight'"):
        load_strict(DeePSiMGenerator("pool5"), renamed, what="deepsim_pool5")
    # an fc8 generator's weights do not fit fc6: the first layer's shape is named
    fc8_shapes = published_generator_shapes("fc8")
    fc8_state = {k: torch.empty(s) for k, s in fc8_shapes.items()}
    with pytest.raises(WeightsError, match=r"'defc7.weight' has shape \(4096, 1000\), expected \(4096, 4096\)"):
        load_strict(DeePSiMGenerator("fc6"), fc8_state, what="deepsim_fc6")
    bad = dict(caffenet_weights, **{"conv2.weight": torch.zeros(256, 96, 5, 5)})  # ungrouped conv2
    with pytest.raises(WeightsError, match=r"'conv2.weight' has shape \(256, 96, 5, 5\), expected \(256, 48, 5, 5\)"):
        load_strict(CaffeNet(), bad, what="caffenet")


# ---------------------------------------------------------------------------------------------
# Numerical parity with the NumPy reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["fc6", "fc7", "fc8", "pool5"])
def test_generator_matches_reference(layer, pool5_generator):
    if layer == "pool5":
        gen, state = pool5_generator
    else:
        state = random_state(published_generator_shapes(layer), seed={"fc6": 6, "fc7": 7, "fc8": 8}[layer], out_gain=60.0)
        gen = DeePSiMGenerator(layer).eval()
        load_strict(gen, state, what=layer)
    code = torch.randn((2,) + gen.code_shape, generator=torch.Generator().manual_seed(0)).abs()
    with torch.no_grad():
        raw, image = gen.raw(code), gen(code)
    ref_raw = ref_generator_raw(state, layer, np_(code))
    assert_close(raw, ref_raw)
    assert image.shape == (2, 3, 256, 256)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    ref_image = ref_decode(ref_raw)
    assert np.abs(np_(image) - ref_image).max() < 1e-4
    # the test is only meaningful if some pixels clamp and others do not
    assert 0.0 < float(((ref_image == 0) | (ref_image == 1)).mean()) < 0.9


def test_unclamped_decoding_is_the_papers_image(pool5_generator):
    gen, _ = pool5_generator
    code = torch.rand(1, 256, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        raw = gen.raw(code)
        gen.clamp = False
        try:
            image = gen(code)
        finally:
            gen.clamp = True
    # back to Caffe's input: RGB -> BGR, x 255, minus the BGR mean gives the raw output exactly
    back = image.flip(1) * 255.0 - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)
    assert torch.allclose(back, raw, atol=1e-3)
    assert float(image.min()) < 0.0 or float(image.max()) > 1.0


def test_caffenet_matches_reference(caffenet, caffenet_weights):
    data = torch.rand(2, 3, 227, 227, generator=torch.Generator().manual_seed(1)) * 255.0 - 120.0
    layers = ["conv5", "pool5", "fc6", "fc7"]
    with torch.no_grad(), capture(caffenet, layers) as acts:
        logits = caffenet(data)
    ref = ref_caffenet(caffenet_weights, np_(data))
    assert_close(logits, ref["fc8"])
    for layer in layers:
        assert_close(acts[layer], ref[layer])
    assert ref["fc6"].min() < 0  # fc6 is pre-ReLU, as the paper read it


def test_caffenet_layers_and_relu_semantics(caffenet):
    names = dict(caffenet.named_modules())
    for layer in ["conv1", "norm1", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7", "relu7", "fc8"]:
        assert layer in names
    x = torch.randn(1, 3, 227, 227) * 50
    with torch.no_grad(), capture(caffenet, ["fc6", "relu6", "conv5", "relu5"]) as acts:
        caffenet(x)
    assert torch.equal(acts["relu6"], acts["fc6"].clamp_min(0))  # the ReLU is not in place
    assert torch.equal(acts["relu5"], acts["conv5"].clamp_min(0))
    assert acts["conv5"].shape == (1, 256, 13, 13)


def test_caffenet_target_preprocessing_and_crop(caffenet, caffenet_weights):
    spec = get_net_spec("caffenet")
    assert spec.output_layer == "fc8" and len(spec.categories) == 1000
    target = Target(caffenet, spec.input, spec.categories, name="caffenet")
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    # the paper: central 227 crop of the 256 image (offset 14), RGB -> BGR, x 255, minus (104, 117, 123)
    crop = np_(images)[:, :, 14:241, 14:241]
    data = crop[:, ::-1] * 255.0 - np.array([104.0, 117.0, 123.0])[None, :, None, None]
    with torch.no_grad():
        assert_close(target.preprocess(images), data, rel=1e-6)
        logits = target(images)
    assert_close(logits, ref_caffenet(caffenet_weights, data)["fc8"])


def test_generator_into_caffenet_gradients_flow(pool5_generator, caffenet):
    gen, _ = pool5_generator
    target = Target(caffenet, get_net_spec("caffenet").input, name="caffenet")
    code = torch.rand(1, 256, 6, 6, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    target(gen(code))[0, 3].backward()
    assert code.grad is not None and float(code.grad.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------
# Weight files: explicit, cached, missing, corrupted, truncated
# ---------------------------------------------------------------------------------------------


def test_load_generator_with_an_explicit_file(tmp_path, home, monkeypatch):
    # The registry's hash is that of the published file; for a test-made file drop it.
    spec = get_generator_spec("deepsim_fc6")
    monkeypatch.setitem(GEN_REGISTRY, "deepsim_fc6", replace(spec, weights=replace(spec.weights, sha256=None)))
    state = random_state(published_generator_shapes("fc6"), seed=6, out_gain=60.0)
    path = tmp_path / "upconvGAN_fc6.pt"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="deepsim_act_range_3x_fc6.txt"):
        gen = load_generator("deepsim_fc6", weights=path)
    assert not any(p.requires_grad for p in gen.parameters())
    with torch.no_grad():
        images = gen(gen.random_code([0, 1, 2]))
    assert images.shape == (3, 3, 256, 256)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    # no bounds file: the paper's lower bound only
    assert torch.equal(gen.lower, torch.zeros(4096)) and torch.isinf(gen.upper).all()


def test_offline_error_names_the_file_and_where_to_put_it(home):
    with pytest.raises(WeightsError) as err:
        load_generator("deepsim_fc6")
    message = str(err.value)
    assert "upconvGAN_fc6.pt" in message
    assert str(home / "weights" / "upconvGAN_fc6.pt") in message
    assert "huggingface.co/binxu/DeePSim_DosovitskiyBrox2016" in message
    with pytest.raises(WeightsError, match="caffenet.pt"):
        load_net("caffenet")


def test_corrupted_cached_file_is_refused(home):
    cached = home / "weights" / "upconvGAN_fc6.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a state dict")
    with pytest.raises(WeightsError, match="d92b0897c56bf8d8d082dc9ea9f0a806490d3da064a7929e4ff813fa95623875.*corrupted"):
        load_generator("deepsim_fc6")


def test_explicit_file_that_does_not_fit_is_refused(tmp_path, home):
    path = tmp_path / "caffenet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)  # another hash is allowed for a named file; these keys are not
    with pytest.raises(WeightsError, match="weights do not fit caffenet: missing"):
        load_net("caffenet", weights=path)
    with pytest.raises(WeightsError, match="weights do not fit deepsim_fc8: missing"):
        load_generator("deepsim_fc8", weights=path)


def test_truncated_and_changed_files_are_refused(tmp_path, home, pool5_generator):
    _, state = pool5_generator
    good = tmp_path / "good.pt"
    torch.save(state, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated.pt cannot be read .*damaged"):
        load_generator("deepsim_pool5", weights=truncated)
    # No published hash for pool5: the first cached use records one, later changes are refused.
    cached = home / "weights" / "upconvGAN_pool5.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    with pytest.warns(UserWarning, match="code bounds"):
        load_generator("deepsim_pool5")
    cached.write_bytes(data[:-100])
    with pytest.raises(WeightsError, match="corrupted, truncated"):
        load_generator("deepsim_pool5")


# ---------------------------------------------------------------------------------------------
# Code bounds
# ---------------------------------------------------------------------------------------------


def test_paper_bounds_file_is_applied(tmp_path, home, pool5_generator):
    _, state = pool5_generator
    weights = tmp_path / "g.pt"
    torch.save(state, weights)
    upper = np.arange(1, 256 * 36 + 1, dtype=np.float64) % 50 + 1
    bounds = home / "weights" / BOUNDS_SOURCES["pool5"].filename
    bounds.parent.mkdir(parents=True)
    bounds.write_text(" ".join(str(int(v)) for v in upper) + " \n")  # the paper's act_range format
    gen = load_generator("deepsim_pool5", weights=weights)
    assert torch.equal(gen.upper, torch.tensor(upper, dtype=torch.float32).view(256, 6, 6))
    assert torch.equal(gen.lower, torch.zeros(256, 6, 6))
    clipped = gen.clip(torch.full((1, 256, 6, 6), 100.0))
    assert torch.equal(clipped[0], gen.upper)


def test_read_bounds_formats_and_errors(tmp_path):
    values = np.linspace(1, 2, 1000).astype(np.float32)
    np.save(tmp_path / "b.npy", values)
    torch.save(torch.from_numpy(values), tmp_path / "b.pt")
    np.savetxt(tmp_path / "b.txt", values[None])
    for name in ("b.npy", "b.pt", "b.txt"):
        assert torch.allclose(read_bounds(tmp_path / name, (1000,)), torch.from_numpy(values))
    with pytest.raises(WeightsError, match="holds 1000 bounds, expected 4096"):
        read_bounds(tmp_path / "b.npy", (4096,))
    (tmp_path / "bad.txt").write_text("1 2 x\n")
    with pytest.raises(WeightsError, match="cannot read code bounds"):
        read_bounds(tmp_path / "bad.txt", (3,))
    gen = DeePSiMGenerator("fc8").load_bounds(tmp_path / "b.txt")
    assert torch.equal(gen.lower, torch.zeros(1000)) and torch.allclose(gen.upper, torch.from_numpy(values))


# ---------------------------------------------------------------------------------------------
# Registry entries and the paper preset
# ---------------------------------------------------------------------------------------------


DEEPSIM_LFS_OIDS = {  # huggingface.co/binxu/DeePSim_DosovitskiyBrox2016: the oids of upconvGAN_LAYER.pt (pool5: none published)
    "fc6": "d92b0897c56bf8d8d082dc9ea9f0a806490d3da064a7929e4ff813fa95623875",
    "fc7": "b2c70c0ebfd060e13594556eb37d76c288a4c37431e3ec5307316758cf2b1ec2",
    "fc8": "b49d115d8252bdb2a20605e1491f380c3d6c4f1dd24113f2a9f6353069a40421",
    "pool5": None,
}


@pytest.mark.parametrize("name", ["deepsim_fc6", "deepsim_fc7", "deepsim_fc8", "deepsim_pool5"])
def test_generator_registry_entries(name):
    spec = get_generator_spec(name)
    layer = name.split("_")[1]
    assert spec.encoder == f"caffenet:{layer}"
    assert spec.weights.filename == f"upconvGAN_{layer}.pt"
    assert spec.weights.urls and spec.weights.urls[0].startswith("https://huggingface.co/binxu/")
    sha = spec.weights.sha256
    assert sha == DEEPSIM_LFS_OIDS[layer]  # typed from the Hugging Face repository's Git LFS pointers
    if sha is not None:
        assert re.fullmatch(r"[0-9a-f]{64}", sha)
        cached = dgnam_home() / "weights" / spec.weights.filename
        if cached.is_file():  # where the file is on this machine, its bytes hash to the registry's
            assert sha256_file(cached) == sha
    assert spec.bounds is not None and "research" in spec.license
    assert BOUNDS_SOURCES[layer].urls[0].startswith("https://raw.githubusercontent.com/Evolving-AI-Lab/synthesizing/")


def test_net_registry_entries():
    spec = get_net_spec("caffenet")
    assert spec.input.size == (227, 227) and spec.input.channel_order == "BGR"
    assert spec.input.mean == (104.0, 117.0, 123.0) and spec.input.value_range == 255.0
    assert spec.input.fit == "center-crop"
    assert len(spec.weights.sha256) == 64
    # alexnet is registered exactly when torchvision can be imported
    assert ("alexnet" in list_nets()) == (importlib.util.find_spec("torchvision") is not None)


def test_convert_state_dict_from_an_index_layout(caffenet_weights):
    # e.g. an nn.Sequential conversion: net.0 conv1, net.4 conv2, ... in file order
    indices = [0, 4, 8, 10, 12, 16, 19, 22]
    other = {}
    for i, name in zip(indices, ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]):
        other[f"net.{i}.weight"] = caffenet_weights[f"{name}.weight"]
        other[f"net.{i}.bias"] = caffenet_weights[f"{name}.bias"]
    converted = convert_state_dict(other)
    assert list(converted) == list(CAFFENET_SHAPES)
    assert all(converted[k] is caffenet_weights[k] for k in CAFFENET_SHAPES)
    swapped = dict(other)
    swapped["net.8.weight"], swapped["net.10.weight"] = other["net.10.weight"], other["net.8.weight"]
    with pytest.raises(WeightsError, match="do not fit conv3"):
        convert_state_dict(swapped)


def test_paper_preset():
    from dgnam.methods.choose import resolve

    choice = resolve("caffenet", preset="paper")  # the one preset path, for the CLI and the API
    cfg = choice.config
    assert (cfg.steps, cfg.lr_start, cfg.lr_end, cfg.decay) == (200, 8.0, 1e-10, 0.99)
    assert cfg.optimizer == "paper" and cfg.clip and cfg.init_std == 1.0
    assert (choice.generator, choice.fit, choice.generator_clamp) == ("deepsim_fc6", "center-crop", False)
    assert resolve("caffenet", preset="paper", overrides={"steps": 10}).config.steps == 10
    assert PAPER_PRESET.net in list_nets() and PAPER_PRESET.generator in dgnam.list_generators()
    assert cfg == dgnam.DGNAMConfig()  # the paper's settings are DGNAMConfig's defaults, stated once
    assert get_net_spec(PAPER_PRESET.net).input.size == (227, 227) and PAPER_PRESET.fit == "center-crop"  # 227 crop of 256
    assert get_preset("paper") is PAPER_PRESET
    with pytest.raises(KeyError, match="Known presets: paper"):
        get_preset("nope")
