"""Gradient-free search in code space (dgnam.methods.blackbox): CMA-ES and the XDream-style GA."""

import json
import sys

import numpy as np
import pytest
import torch

import dgnam
from dgnam import Unit, run_objective, units_objective
from dgnam.methods.blackbox import CMAESConfig, GAConfig, _codes_from_numpy, blackbox_am, cmaes_am, ga_am, require_cma
from dgnam import cli

from conftest import TinyGenerator, TinyNet

UNITS = [Unit("logits", 1), Unit("conv2", 3)]
CONFIGS = {"cmaes": CMAESConfig(evals=301), "ga": GAConfig(evals=400)}


def redness_numpy(images):
    """A non-differentiable black box: NumPy, mean red minus the other channels."""
    x = np.asarray(images)
    return (x[:, 0] - x[:, 1:].mean(1)).mean((1, 2))


def random_best(score, generator, n=256):
    """Best score of ``n`` random codes from the prior: what search has to beat."""
    with torch.no_grad():
        images = generator(generator.clip(generator.random_code(list(range(1000, 1000 + n)))))
    return score(images)


def gradient_optimum(score, generator, steps=300):
    """Best score that projected gradient ascent (Adam) reaches from 16 starts: a reference optimum."""
    code = generator.clip(generator.random_code(list(range(16)))).requires_grad_(True)
    adam = torch.optim.Adam([code], lr=0.05)
    for _ in range(steps):
        adam.zero_grad()
        (-score(generator(code)).sum()).backward()
        adam.step()
        with torch.no_grad():
            code.copy_(generator.clip(code))
    with torch.no_grad():
        return float(score(generator(code)).max())


@pytest.mark.parametrize("method", ["cmaes", "ga"])
def test_units_of_a_target_rise_far_above_random_codes(tiny_target, tiny_generator, method):
    r = blackbox_am(tiny_target, tiny_generator, UNITS, [0, 1], CONFIGS[method], progress=False)
    assert r.method == method and r.config["evals_used"] <= CONFIGS[method].evals
    for i, unit in enumerate(UNITS):
        baseline = random_best(lambda im: run_objective(tiny_target, im, units_objective([unit] * len(im))), tiny_generator)
        assert r.best[i] > baseline.max(), (method, unit, r.best[i], baseline.max())
        assert r.best[i] > r.history[i, 0] + 0.5 * (baseline.max() - baseline.median()), (r.best[i], r.history[i, 0])
    # the returned images have the recorded scores
    with torch.no_grad():
        again = run_objective(tiny_target, r.best_images, units_objective(UNITS))
        final = run_objective(tiny_target, r.images, units_objective(UNITS))
    assert torch.allclose(again, r.best, atol=1e-5) and torch.allclose(final, r.final, atol=1e-5)
    assert (r.best >= r.history.max(1).values).all() and (r.best >= r.final).all()
    assert r.codes.shape == (2, 8) and r.images.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("method", ["cmaes", "ga"])
def test_numpy_callable_is_maximized_and_codes_stay_in_bounds(method):
    torch.manual_seed(1)
    gen = TinyGenerator().eval().set_bounds(0.0, 2.0)
    seen = []
    decode = gen.decode
    gen.decode = lambda code: (seen.append(code.detach().clone()), decode(code))[1]  # records every code evaluated
    r = blackbox_am(redness_numpy, gen, seeds=[3, 4], config=CONFIGS[method], progress=False)
    codes = torch.cat(seen)
    assert len(codes) >= 2 * 290 and codes.min() >= 0.0 and codes.max() <= 2.0
    baseline = torch.as_tensor(random_best(redness_numpy, gen)).float()
    assert (r.best > baseline.max()).all(), (r.best, baseline.max())
    # closes most of the gap between the first generation's best and the optimum that gradients find
    optimum = gradient_optimum(lambda im: (im[:, 0] - im[:, 1:].mean(1)).mean((1, 2)), gen)
    assert (r.best - r.history[:, 0] >= 0.8 * (optimum - r.history[:, 0])).all(), (r.best, r.history[:, 0], optimum)
    assert r.units == [Unit("blackbox", 0)] * 2 and r.seeds == [3, 4]


@pytest.mark.parametrize("method", ["cmaes", "ga"])
def test_same_seed_same_result_and_no_global_rng(tiny_generator, method):
    def red(images):
        return (images[:, 0] - images[:, 1:].mean(1)).mean((1, 2))

    config = CMAESConfig(evals=61) if method == "cmaes" else GAConfig(evals=80, population=20, elite=2)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    a = blackbox_am(red, tiny_generator, seeds=[5, 6], config=config, progress=False)
    assert (np.random.get_state()[1] == np_state).all() and torch.equal(torch.get_rng_state(), torch_state)
    np.random.seed(123), torch.manual_seed(123)  # the global RNGs play no part
    b = blackbox_am(red, tiny_generator, seeds=[5, 6], config=config, progress=False)
    for name in ("images", "best_images", "history", "codes", "final", "best"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    c = blackbox_am(red, tiny_generator, seeds=[7, 6], config=config, progress=False)
    assert not torch.equal(a.codes[0], c.codes[0]) and torch.equal(a.codes[1], c.codes[1])


def test_budget_generations_and_one_scorer_per_search(tiny_generator):
    calls = []

    def scorer(k):
        def score(images):
            calls.append((k, len(images)))
            return images[:, k].mean((1, 2))

        return score

    r = cmaes_am([scorer(0), scorer(2)], tiny_generator, seeds=[0, 0], config=CMAESConfig(evals=51, popsize=10, max_batch=4), progress=False)
    assert r.history.shape == (2, 5) and r.config["generations"] == 5 and r.config["evals_used"] == 51
    assert max(n for _, n in calls) <= 4 and sum(n for k, n in calls if k == 0) == 51
    assert r.units == [Unit("blackbox", 0), Unit("blackbox", 1)]
    assert r.best[0] != r.best[1]  # each search had its own scorer
    g = ga_am(scorer(1), tiny_generator, seeds=[0], config=GAConfig(evals=100, population=20, elite=5, rescore_elite=False), progress=False)
    assert g.config["generations"] == 1 + (100 - 20) // 15 and g.config["evals_used"] <= 100
    assert g.history.shape == (1, g.config["generations"])


def test_cmaes_goes_separable_for_large_codes_by_default(tiny_generator, monkeypatch):
    import dgnam.methods.blackbox as bb

    assert CMAESConfig().separable(bb.FULL_COVARIANCE_MAX_DIM) is False and CMAESConfig().separable(320 * 7 * 7) is True
    assert CMAESConfig(diagonal=False).separable(10**6) is False and CMAESConfig(diagonal=True).separable(8) is True
    seen = []
    real = bb.require_cma()

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def CMAEvolutionStrategy(self, x0, sigma, options):  # noqa: N802 (cma's name)
            seen.append(options["CMA_diagonal"])
            return real.CMAEvolutionStrategy(x0, sigma, options)

    monkeypatch.setattr(bb, "require_cma", lambda: Spy())
    monkeypatch.setattr(bb, "FULL_COVARIANCE_MAX_DIM", 4)  # the tiny generator's 8-d code counts as large
    cmaes_am(lambda im: im.mean((1, 2, 3)), tiny_generator, seeds=[0], config=CMAESConfig(evals=21, popsize=10), progress=False)
    assert seen == [True]


@pytest.mark.parametrize(
    "score, error, match",
    [
        (lambda im: im.mean((2, 3)), ValueError, r"shape \(\d+, 3\).*one score per image"),
        (lambda im: im.mean(), ValueError, "one score per image"),
        (lambda im: torch.full((len(im),), float("nan")), ValueError, "NaN"),
        (lambda im: "high", TypeError, "one number per image"),
    ],
)
def test_bad_scorers_are_named(tiny_generator, score, error, match):
    with pytest.raises(error, match=match):
        ga_am(score, tiny_generator, seeds=[0], config=GAConfig(evals=40, population=20), progress=False)


def test_bad_arguments_are_named(tiny_target, tiny_generator):
    with pytest.raises(ValueError, match="one unit per seed"):
        cmaes_am(tiny_target, tiny_generator, None, [0], CMAESConfig(evals=30), progress=False)
    with pytest.raises(ValueError, match="one per unit x seed"):
        ga_am([redness_numpy], tiny_generator, seeds=[0, 1], config=GAConfig(evals=40, population=20), progress=False)
    with pytest.raises(ValueError, match="popsize"):
        cmaes_am(redness_numpy, tiny_generator, seeds=[0], config=CMAESConfig(evals=10, popsize=10), progress=False)
    with pytest.raises(ValueError, match="evals"):
        GAConfig(evals=10, population=20)
    with pytest.raises(TypeError, match="CMAESConfig or a GAConfig"):
        blackbox_am(redness_numpy, tiny_generator, config=dgnam.DGNAMConfig())
    with pytest.raises(dgnam.UnitError):
        ga_am(tiny_target, tiny_generator, [Unit("logits", 99)], [0], GAConfig(evals=40, population=20), progress=False)


def test_non_finite_scores_of_a_target_net_are_named(tiny_generator):
    model = TinyNet()
    with torch.no_grad():
        model.logits.bias[1] = float("nan")  # a broken net: class 1 scores NaN
    target = dgnam.wrap_model(model, dgnam.InputSpec(size=(32, 32), min_size=8), name="broken")
    for config in (GAConfig(evals=40, population=20), CMAESConfig(evals=21, popsize=10)):
        with pytest.raises(ValueError, match="target net 'broken' returned NaN or inf"):
            blackbox_am(target, tiny_generator, [Unit("logits", 1)], [0], config, progress=False)
    r = ga_am(target, tiny_generator, [Unit("logits", 2)], [0], GAConfig(evals=40, population=20), progress=False)
    assert torch.isfinite(r.best).all()  # other units of the same net are fine


def test_a_gradient_free_config_without_a_generator_names_the_fix(tiny_target):
    from dgnam.run import iter_visualize, make_jobs

    for config in (CMAESConfig(), GAConfig()):
        with pytest.raises(ValueError, match="pass generator="):
            iter_visualize(tiny_target, make_jobs([Unit("logits", 1)], [0]), None, config)


def test_cmaes_codes_are_made_and_clipped_on_the_generators_device():
    """CMA-ES proposes NumPy codes; they must be clipped where the bounds live (CUDA on a GPU). The
    'meta' device stands in for CUDA here: a CPU code against meta bounds fails as against CUDA ones."""
    gen = TinyGenerator().set_bounds(0.0, 2.0).to("meta")
    codes = _codes_from_numpy(np.linspace(-1.0, 3.0, 16).reshape(2, 8), gen)
    assert codes.device == gen.lower.device and codes.shape == (2, 8) and codes.dtype == torch.float32
    cpu = TinyGenerator().set_bounds(0.0, 2.0)
    codes = _codes_from_numpy(np.linspace(-1.0, 3.0, 16).reshape(2, 8), cpu)
    assert codes.min() == 0.0 and codes.max() == 2.0  # clipped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cmaes_and_ga_run_with_a_generator_and_net_on_cuda(tiny_target, tiny_generator):
    gen, net = tiny_generator.to("cuda"), tiny_target.to("cuda")
    for config in (CMAESConfig(evals=31, popsize=10), GAConfig(evals=40, population=20)):
        r = blackbox_am(net, gen, [Unit("logits", 1)], [0], config, progress=False)
        assert r.codes.device.type == "cpu" and torch.isfinite(r.best).all()


def test_missing_cma_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "cma", None)  # a broken install: cma is a core dependency
    with pytest.raises(ImportError, match=r"pip install cma"):
        require_cma()


def test_cli_gradient_free_search_writes_the_same_run_folder(tmp_path, tiny_registry):
    net_file, gen_file = tiny_registry
    base = ["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
            "--unit", "logits:dog", "--seeds", "0-1", "--quiet"]
    assert cli.main(base + ["--optimizer", "ga", "--evals", "80", "--out", str(tmp_path / "ga")]) == 0
    record = json.loads((tmp_path / "ga" / "results.json").read_text())
    assert record["method"] == "ga:tiny_gen" and record["config"]["evals"] == 80 and record["complete"]
    assert [item["file"] for item in record["items"]] == ["logits_0001_seed0.png", "logits_0001_seed1.png"]
    assert len(record["items"][0]["history"]) == 2  # generations of 40
    assert (tmp_path / "ga" / "best" / "logits_0001_seed1.png").exists()
    batch = record["batches"][0]  # the resolved search settings, and what an item's history counts
    assert batch["history_axis"] == "generation" and batch["method"] == "ga"
    assert batch["config"]["generations"] == 2 and batch["config"]["evals_used"] == 80 and batch["config"]["population"] == 40
    assert cli.main(base + ["--optimizer", "cmaes", "--evals", "41", "--out", str(tmp_path / "cma")]) == 0
    cma = json.loads((tmp_path / "cma" / "results.json").read_text())
    assert cma["method"] == "cmaes:tiny_gen" and cma["config"]["popsize"] is None  # the flags' config: cma's default popsize
    resolved = cma["batches"][0]["config"]
    assert cma["batches"][0]["history_axis"] == "generation" and resolved["popsize"] == 10  # 4 + 3 ln(8)
    assert resolved["generations"] == 4 and resolved["evals_used"] == 41 == resolved["evals"]
    assert len(cma["items"][0]["history"]) == 4
    # a gradient optimizer spends the same budget as steps: one forward+backward per evaluation
    assert cli.main(base + ["--optimizer", "gradient", "--evals", "13", "--out", str(tmp_path / "grad")]) == 0
    grad = json.loads((tmp_path / "grad" / "results.json").read_text())
    assert grad["method"] == "dgn-am:tiny_gen" and grad["config"]["steps"] == 12 and grad["config"]["optimizer"] == "paper"
    assert grad["batches"][0]["history_axis"] == "step" and grad["batches"][0]["config"]["steps"] == 12
    assert cli.main(base + ["--optimizer", "ga", "--steps", "5", "--out", str(tmp_path / "x")]) == 2
    assert cli.main(base + ["--pixel", "pixel", "--optimizer", "cmaes", "--out", str(tmp_path / "y")]) == 2
