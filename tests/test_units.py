import pytest
import torch

from dgnam import Unit, UnitError, check_units, parse_unit, parse_units, run_objective, units_objective
from dgnam.core.units import read_unit

from conftest import CATEGORIES, hook_count


def test_parse_forms():
    assert parse_unit("logits:3") == [Unit("logits", 3)]
    assert parse_unit("_blocks.15:37@mean") == [Unit("_blocks.15", 37, "mean")]
    assert parse_unit("_blocks.15:37@3,4") == [Unit("_blocks.15", 37, (3, 4))]
    assert parse_unit("blocks.11:5@cls") == [Unit("blocks.11", 5, "cls")]
    assert parse_unit("blocks.11:5@7") == [Unit("blocks.11", 5, 7)]
    assert [u.index for u in parse_unit("logits:0-3")] == [0, 1, 2, 3]
    assert [u.index for u in parse_unit("logits:1,4-5")] == [1, 4, 5]


def test_class_names():
    assert parse_unit('logits:"bell pepper"', CATEGORIES) == [Unit("logits", 2)]
    assert parse_unit("logits:tabby", CATEGORIES) == [Unit("logits", 0)]
    assert parse_unit("logits:Dog@mean", CATEGORIES) == [Unit("logits", 1, "mean")]
    with pytest.raises(UnitError, match="ambiguous.*3.*4"):
        parse_unit("logits:crane", CATEGORIES)
    with pytest.raises(UnitError, match="bell pepper"):
        parse_unit("logits:bel pepper", CATEGORIES)


@pytest.mark.parametrize("bad, message", [("logits", "has no ':'"), ("logits:", "has no unit index"), (":3", "empty layer name"),
                                          ("logits:5-2", r"range '5-2' is empty"), ("logits:3@nowhere", "unknown location 'nowhere'"),
                                          ("logits:3@", "nothing after '@'")])  # fmt: skip
def test_parse_errors(bad, message):
    with pytest.raises(UnitError, match=message):
        parse_unit(bad)


def test_units_file(tmp_path):
    f = tmp_path / "units.txt"
    f.write_text("logits:1  # a comment\n\nconv2:0-1@mean\n")
    assert parse_units([f"@{f}", "logits:0"]) == [Unit("logits", 1), Unit("conv2", 0, "mean"), Unit("conv2", 1, "mean"), Unit("logits", 0)]


def test_read_unit_maps_to_the_right_element():
    a = torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).view(2, 4, 5, 6)
    got = read_unit(a, [Unit("x", 3), Unit("x", 1, (4, 5))])
    assert got.tolist() == [a[0, 3, 2, 3].item(), a[1, 1, 4, 5].item()]
    got = read_unit(a, [Unit("x", 2, "mean"), Unit("x", 0, "center")])
    assert torch.allclose(got, torch.stack([a[0, 2].mean(), a[1, 0, 2, 3]]))
    tokens = torch.randn(2, 7, 3)
    got = read_unit(tokens, [Unit("t", 2), Unit("t", 1, 5)])
    assert got.tolist() == [tokens[0, 0, 2].item(), tokens[1, 5, 1].item()]
    assert torch.isclose(read_unit(tokens, [Unit("t", 0, "mean")] * 2)[1], tokens[1, :, 0].mean())
    vec = torch.randn(2, 9)
    assert read_unit(vec, [Unit("v", 8), Unit("v", 0)]).tolist() == [vec[0, 8].item(), vec[1, 0].item()]


def test_objective_reads_hooked_layers_and_removes_hooks(tiny_target):
    units = [Unit("logits", 2), Unit("conv2", 5, "mean"), Unit("act1", 1, (3, 4))]
    images = torch.rand(3, 3, 32, 32)
    scores = run_objective(tiny_target, images, units_objective(units))
    model = tiny_target.model
    x = tiny_target.preprocess(images)
    h1 = model.act1(model.bn1(model.conv1(x)))
    c2 = model.conv2(h1)
    logits = model.logits(model.pool(model.act2(c2)))
    expected = torch.stack([logits[0, 2], c2[1, 5].mean(), h1[2, 1, 3, 4]])
    assert torch.allclose(scores, expected, atol=1e-6)
    assert hook_count(model) == 0


def test_hidden_units_stop_the_pass_after_their_deepest_layer(tiny_target):
    ran = []
    handles = [getattr(tiny_target.model, name).register_forward_hook(lambda *_, name=name: ran.append(name)) for name in ("conv2", "logits")]
    try:
        check_stops(tiny_target, ran)
    finally:
        for h in handles:
            h.remove()


def check_stops(tiny_target, ran):
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    hidden = units_objective([Unit("act1", 2, "mean"), Unit("act1", 5, (3, 4))])
    scores = run_objective(tiny_target, images, hidden)
    assert ran == []  # neither conv2 nor the logits ran
    (grad,) = torch.autograd.grad(scores.sum(), images)
    # the same scores and gradient as a full pass that reads the layer by hand
    full = images.detach().clone().requires_grad_(True)
    from dgnam.core.hooks import capture

    with capture(tiny_target.model, ["act1"]) as acts:
        tiny_target(full)
    assert ran == ["conv2", "logits"]
    expected = torch.stack([acts["act1"][0, 2].mean(), acts["act1"][1, 5, 3, 4]])
    assert torch.allclose(scores, expected)
    assert torch.allclose(grad, torch.autograd.grad(expected.sum(), full)[0])
    assert hook_count(tiny_target.model) == 2  # only the test's own hooks are left
    # a class unit needs the whole pass
    ran.clear()
    run_objective(tiny_target, images, units_objective([Unit("logits", 1), Unit("act1", 0, "mean")]))
    assert ran == ["conv2", "logits"]


def test_hooks_removed_after_an_error(tiny_target):
    # the hook on conv2 is registered before the unknown layer raises
    with pytest.raises(UnitError, match="unknown layer"):
        run_objective(tiny_target, torch.rand(2, 3, 32, 32), units_objective([Unit("conv2", 0), Unit("nope", 0)]))
    assert hook_count(tiny_target.model) == 0
    # and a failing forward pass also leaves no hook behind
    with pytest.raises(ValueError):
        run_objective(tiny_target, torch.rand(2, 3, 4, 4), units_objective([Unit("conv2", 0)] * 2))
    assert hook_count(tiny_target.model) == 0


def test_composed_objectives(tiny_target):
    a = units_objective([Unit("logits", 0)] * 2)
    b = units_objective([Unit("logits", 1)] * 2)
    images = torch.rand(2, 3, 32, 32)
    sa, sb = run_objective(tiny_target, images, a), run_objective(tiny_target, images, b)
    assert torch.allclose(run_objective(tiny_target, images, a - 0.5 * b + 1), sa - 0.5 * sb + 1)


def test_check_units_errors_name_what_is_valid(tiny_target):
    with pytest.raises(UnitError, match="conv2"):
        check_units(tiny_target, [Unit("conv3", 0)])
    with pytest.raises(UnitError, match="5 units"):
        check_units(tiny_target, [Unit("logits", 5)])
    with pytest.raises(UnitError, match="no @location"):
        check_units(tiny_target, [Unit("logits", 1, "mean")])
    with pytest.raises(UnitError, match="outside"):
        check_units(tiny_target, [Unit("conv2", 1, (16, 0))])
    shapes = check_units(tiny_target, [Unit("conv2", 1, (15, 15)), Unit("output", 4)])
    assert shapes == {"conv2": (1, 6, 16, 16), "output": (1, 5)}
    assert hook_count(tiny_target.model) == 0


def test_image_too_small(tiny_target):
    with pytest.raises(ValueError, match="at least 8 px"):
        tiny_target(torch.rand(1, 3, 4, 4))


class TinyViT(torch.nn.Module):
    """Patch embedding + a cls token + one transformer layer: outputs (N, T, C) token sequences."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.block = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = self.block(torch.cat([self.cls.expand(len(x), -1, -1), t], 1))
        return self.head(t[:, 0])


def test_token_layers_of_a_vision_transformer():
    import dgnam

    torch.manual_seed(0)
    target = dgnam.wrap_model(TinyViT(), dgnam.InputSpec(size=(32, 32), min_size=8))
    units = parse_units(["block:3", "block:5@mean", "block:1@16"])
    assert check_units(target, units)["block"] == (1, 17, 8)
    with pytest.raises(UnitError, match="token 17 is out of range"):
        check_units(target, parse_units(["block:1@17"]))
    with pytest.raises(UnitError, match="@cls, @mean or @T"):
        check_units(target, parse_units(["block:1@2,2"]))
    # channels are the last axis of (N, T, C): 8 units, not 17 (the token count)
    for bad in ("block:8", "block:10@mean", "block:16@3"):
        with pytest.raises(UnitError, match=r"unit \d+ is out of range for layer 'block', which has 8 units \(0-7\)"):
            check_units(target, parse_units([bad]))
    with pytest.raises(UnitError, match="which has 8 units"):  # before any work
        dgnam.visualize(target, parse_units(["block:3", "block:12"]), config=dgnam.PixelConfig(method="pixel", steps=1), progress=False)
    images = torch.rand(3, 3, 32, 32)
    got = run_objective(target, images, units_objective(units))
    tokens = target.model.block(torch.cat([target.model.cls.expand(3, -1, -1), target.model.patch(target.preprocess(images)).flatten(2).transpose(1, 2)], 1))
    assert torch.allclose(got, torch.stack([tokens[0, 0, 3], tokens[1, :, 5].mean(), tokens[2, 16, 1]]), atol=1e-5)


def test_receptive_field_is_computed_from_the_gradient(tiny_target):
    from dgnam.core.objectives import receptive_field_box

    # conv1 (3x3, pad 1) then conv2 (3x3, stride 2, pad 1): conv2 at (y, x) sees input rows 2y-2 .. 2y+2
    assert receptive_field_box(tiny_target, Unit("conv2", 0, (5, 3)), (32, 32)) == (8, 4, 13, 9)
    assert receptive_field_box(tiny_target, Unit("conv2", 0, (0, 0)), (32, 32)) == (0, 0, 3, 3)  # clipped at the border
    assert receptive_field_box(tiny_target, Unit("conv1", 2), (32, 32)) == (15, 15, 18, 18)  # centre of 32x32
    # a 64 px generator image resized to the 32 px input: the box doubles (and widens by the bilinear kernel)
    top, left, bottom, right = receptive_field_box(tiny_target, Unit("conv1", 2), (64, 64))
    assert 28 <= top <= 30 and 36 <= bottom <= 38 and (top, bottom) == (left, right)
    assert receptive_field_box(tiny_target, Unit("logits", 1), (32, 32)) is None
    assert hook_count(tiny_target.model) == 0


def test_positions_on_a_non_square_map_are_bounded_by_height_then_width():
    from dgnam.core.units import check_unit

    shape = (1, 4, 3, 7)  # (N, C, H, W): 3 rows, 7 columns
    check_unit(Unit("x", 1, (2, 6)), shape)  # the last row, the last column
    for y, x in [(6, 2), (3, 0), (0, 7)]:  # @Y,X with Y past the 3 rows or X past the 7 columns
        with pytest.raises(UnitError, match=rf"position \({y}, {x}\) is outside layer 'x''s 3x7 map"):
            check_unit(Unit("x", 1, (y, x)), shape)
    a = torch.arange(4 * 3 * 7, dtype=torch.float32).view(1, 4, 3, 7)
    assert read_unit(a, [Unit("x", 1, (2, 6))]).item() == a[0, 1, 2, 6].item() == 1 * 21 + 2 * 7 + 6
