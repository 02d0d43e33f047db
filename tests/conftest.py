"""Tiny nets and generators built by the tests (the real pretrained nets are used by few tests)."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

import dgnam
from dgnam.generators import GeneratorSpec
from dgnam.infra.hub import WeightSource
from dgnam.nets import InputSpec, NetSpec

#: Runs in .ci/run's second venv (torch 2.14.1 + torchvision + timm + transformers), where DGNAM_REAL_ADAPTERS is set.
REAL_ADAPTERS = "test_adapters_real.py"


def _torchvision_imports() -> bool:
    try:
        import torchvision.models  # noqa: F401  (beside the CPU torch 2.13.0: "operator torchvision::nms does not exist")
    except Exception:
        return False
    return True


def pytest_ignore_collect(collection_path, config):
    """The real adapters' module belongs to the second venv: the main venv (no torchvision beside its torch) does not
    collect it, so the main suite's skips are only the GPU test; the header says where it runs instead."""
    if collection_path.name == REAL_ADAPTERS and not os.environ.get("DGNAM_REAL_ADAPTERS") and not _torchvision_imports():
        return True
    return None


def pytest_report_header(config):
    if not os.environ.get("DGNAM_REAL_ADAPTERS") and not _torchvision_imports():
        return [f"tests/{REAL_ADAPTERS} is not collected here (no torchvision beside this torch): .ci/run runs it in its "
                "second venv with DGNAM_REAL_ADAPTERS=1 (README 'Set-up')"]
    return []


class TinyNet(nn.Module):
    """A small conv classifier with named layers of each kind: maps, a vector and logits."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 6, 3, stride=2, padding=1)
        self.act2 = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.logits = nn.Linear(6, classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.conv2(x))
        return self.logits(self.pool(x))


class TinyGenerator(dgnam.Generator):
    """8-d code -> 32x32 image through a linear layer and upsampling."""

    def __init__(self):
        super().__init__((8,), (32, 32))
        self.fc = nn.Linear(8, 3 * 8 * 8)
        self.up = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)

    def decode(self, code):
        return torch.sigmoid(self.up(self.fc(code).view(-1, 3, 8, 8)))


CATEGORIES = ("cat, tabby", "dog", "bell pepper", "crane", "crane")


@pytest.fixture
def tiny_target():
    torch.manual_seed(0)
    model = TinyNet().eval()  # as a trained model is used (wrap_model leaves the mode to its owner)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.bn1.running_mean.uniform_(-0.1, 0.1)
        model.bn1.running_var.uniform_(0.5, 1.5)
    return dgnam.wrap_model(model, dgnam.InputSpec(size=(32, 32), min_size=8), categories=CATEGORIES, name="tiny")


@pytest.fixture
def tiny_generator():
    torch.manual_seed(1)
    gen = TinyGenerator().eval()
    gen.set_bounds(0.0, 2.0)
    for p in gen.parameters():
        p.requires_grad_(False)
    return gen


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    """Registers a tiny net and generator whose weights are files the test writes."""
    torch.manual_seed(0)
    net_file, gen_file = tmp_path / "tiny_net.pth", tmp_path / "tiny_gen.pth"
    torch.save(TinyNet().state_dict(), net_file)
    torch.save(TinyGenerator().state_dict(), gen_file)
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    dgnam.nets.catalog._ensure_builtin()
    dgnam.generators.catalog._ensure_builtin()
    monkeypatch.setitem(
        dgnam.nets.spec._REGISTRY,
        "tiny",
        NetSpec("tiny", TinyNet, WeightSource("tiny_net.pth"), InputSpec(size=(32, 32), min_size=8), CATEGORIES),
    )

    def bounds(gen):
        gen.set_bounds(0.0, 1.5)

    monkeypatch.setitem(
        dgnam.generators.spec._REGISTRY,
        "tiny_gen",
        GeneratorSpec("tiny_gen", TinyGenerator, WeightSource("tiny_gen.pth"), encoder="tiny:pool", bounds=bounds, default=True),
    )
    return net_file, gen_file


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def missing(reason: str):
    """Skip the test (or the module) for want of ``reason``; under ``CI`` fail instead: .ci/run installs every
    test extra, the real weights and Chromium, so a missing one there is a broken install, not a reason to skip."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, but {reason}")
    pytest.skip(reason, allow_module_level=True)


def require(module: str, reason: str):
    """``import module`` for a test, or :func:`missing` (skip; under CI a failure) naming ``reason``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"the test needs {module}: {reason}")


def needs(module: str, reason: str):
    """Decorator: the test runs only where ``module`` is installed (else :func:`missing`: skip, under CI fail)."""

    def decorate(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            if importlib.util.find_spec(module) is None:
                missing(f"the test needs {module}: {reason}")
            return test(*args, **kwargs)

        return run

    return decorate


@pytest.fixture
def default_sigint():
    """Ctrl-C as KeyboardInterrupt for the test, whatever pytest inherited (a shell script that runs it in the
    background starts it with SIGINT ignored, and a test that sends itself SIGINT would see nothing)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def join_or_kill(procs, timeout: float) -> list[int]:
    """Wait for child processes at most ``timeout`` seconds in all; kill any still running and fail the test
    naming it (never a hang, never a stray process). Returns their exit codes."""
    import time

    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    late = [p for p in procs if p.is_alive()]
    for p in late:
        p.kill()
        p.join(10)
    if late:
        pytest.fail(f"{len(late)} child process(es) still running after {timeout:g} s were killed: {', '.join(p.name for p in late)}")
    return [p.exitcode for p in procs]


def run_notebook(name: str, folder: Path) -> list:
    """Execute examples/NAME headless (working folder ``folder``); its code cells' outputs, none an error."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(Path(__file__).resolve().parents[1] / "examples" / name, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return outputs


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module (its folder on sys.path only while it loads, for its sibling imports)."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", bench / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(bench))
