"""DGN-AM against the pixel-space baselines on Fashion-MNIST, end to end on a CPU in minutes.

The paper's comparison (Nguyen et al. 2016) at a scale that trains here from scratch:

1. a small CNN classifier is both the **encoder** E (its penultimate layer ``code``, 128 ReLU units,
   plays the part of CaffeNet's fc6) and the **target** whose class logits are maximized;
2. two **judges** of other architectures and seeds (an MLP and a tiny ResNet) are trained on the same
   data and never optimized against: they say whether a synthesized image shows its class;
3. a DeePSiM-style **generator** (:class:`~dgnam.generators.prior.PriorGenerator`, 4 -> 8 -> 16 -> 32 px)
   learns to invert E with a pixel loss, a feature loss in a comparator (E's early conv block) and a
   small adversarial term with a discriminator that also sees the code, brought in by stages as in
   :mod:`dgnam.train`; its code bounds are the paper's [0, mean + 3 std] of the training codes;
4. **DGN-AM** (:func:`dgnam.dgn_am`, the paper's schedule) and the **pixel baselines**
   (:func:`dgnam.pixel_am`) synthesize every class from several seeds;
5. every image is **judged** (top-1 of the target and of each judge), the seeds' **diversity** is
   measured, and each image's **nearest training images** are found in pixel space and in E's code
   space, to tell whether a method merely reproduces a training image.

Images: Fashion-MNIST's 28 px grey images are padded by 2 px of background to 32 px (as LeNet-5 padded
MNIST), so the generator's doublings end exactly at the nets' input size. Every net here reads grey:
given RGB (what generators and pixel methods produce) it averages the channels first
(:class:`GreyInput`), so a net sees exactly the grey image that the contact sheets show.

Compute is in the functions below; :func:`run_repro` adds the files (weights with their configs,
contact sheets, ``results.json``); ``dgnam repro fashion-mnist`` is its command line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import struct
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..generators import load_generator
from ..generators.prior import prior_metadata, save_prior
from ..nets import wrap_model
from .fashion_am import AMConfig, Checks, GeneratorConfig, METHODS, MethodCheck, PIXEL_AT_32, Reference, build_generator, class_diversity, judge, reconstruction_metrics, synthesize, train_generator
from .fashion_nets import ARCHS, FEATURE_LAYER, FashionCNN, FashionMLP, GreyInput, NetConfig, Normalization, SIZE, TinyResNet, accuracy, build_net, grey, layer_features, train_classifier

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
PACKAGE = "dataset-fashion-mnist"  # Debian package (Expat licence, Zalando SE 2017)
IDX_DIR = "usr/share/datasets/fashion-mnist"  # where the package puts the idx files
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}

# ==================================================================================================
# Data
# ==================================================================================================


@dataclass
class ImageData:
    """A 10-class grey image classification set.

    Attributes:
        train_x, test_x: uint8 (N, H, W) grey images, 0 = background.
        train_y, test_y: int64 (N,) labels.
        classes: Class names, in label order.
        source: Where the data came from (package, version, licence, or the synthetic recipe).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("train", "test"):
            x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
            if x.ndim != 3 or x.dtype != np.uint8:
                raise ValueError(f"{name}_x must be uint8 (N, H, W), got {x.dtype} {x.shape}")
            if len(x) != len(y):
                raise ValueError(f"{name}: {len(x)} images but {len(y)} labels")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{name} labels must lie in 0-{len(self.classes) - 1}")
            if max(x.shape[1:]) > SIZE:
                raise ValueError(f"images must be at most {SIZE} px a side, got {x.shape[1:]}")

    def identity(self) -> str:
        """A short hash of the data (images and labels): saved weights are reused only on the same data."""
        h = hashlib.sha256()
        for array in (self.train_x, self.train_y, self.test_x, self.test_y):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:16]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an unsigned-byte idx file (the MNIST format), gzipped or not.

    Args:
        path: ``*-idx3-ubyte[.gz]`` (images) or ``*-idx1-ubyte[.gz]`` (labels).

    Returns:
        uint8 array of the file's shape, e.g. (60000, 28, 28).

    Example:
        >>> read_idx(root / IDX_DIR / "t10k-labels-idx1-ubyte.gz").shape
        (10000,)
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0":
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte idx files are supported (type code {data[2]:#x})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != math.prod(dims):
        raise ValueError(f"{path}: header says {dims} ({math.prod(dims)} values), the file holds {values.size}")
    return values.reshape(dims).copy()


def load_fashion_mnist(cache_dir: str | Path | None = None, fetch: Callable | None = None) -> ImageData:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist``, downloaded and unpacked (not installed)
    into the cache with :func:`dgnam.pool.debian.fetch_deb`.

    Args:
        cache_dir: Folder of unpacked packages (default ``$DGNAM_HOME/debs``).
        fetch: ``(package, cache_dir) -> DebPackage`` (default :func:`dgnam.pool.debian.fetch_deb`).

    Returns:
        60,000 training and 10,000 test images, 28 x 28 px.

    Raises:
        RuntimeError: the package cannot be fetched (``apt-get download`` needs Debian's registry).
    """
    from ..pool import default_cache_dir, fetch_deb

    deb = (fetch or fetch_deb)(PACKAGE, Path(cache_dir) if cache_dir else default_cache_dir())
    folder = deb.root / IDX_DIR
    missing = [name for name in IDX_FILES.values() if not (folder / name).exists()]
    if missing:
        raise RuntimeError(f"{PACKAGE} {deb.version} has no {', '.join(missing)} under {folder}")
    arrays = {key: read_idx(folder / name) for key, name in IDX_FILES.items()}
    return ImageData(
        arrays["train_x"], arrays["train_y"].astype(np.int64), arrays["test_x"], arrays["test_y"].astype(np.int64), CLASSES,
        source={"name": "fashion-mnist", "package": PACKAGE, "version": deb.version, "license": "MIT (Expat), Zalando SE 2017", "folder": str(folder)},
    )


SHAPES = ("hbar", "vbar", "square", "frame", "disc", "ring", "plus", "cross", "triangle", "dots")


def _shape_mask(kind: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    ay, ax = np.abs(dy), np.abs(dx)
    box, dist = np.maximum(ay, ax), np.hypot(dy, dx)
    masks = {
        "hbar": (ay < 0.3 * r) & (ax < r),
        "vbar": (ax < 0.3 * r) & (ay < r),
        "square": box < 0.8 * r,
        "frame": (box < r) & (box >= 0.6 * r),
        "disc": dist < 0.9 * r,
        "ring": (dist < r) & (dist >= 0.6 * r),
        "plus": ((ay < 0.2 * r) | (ax < 0.2 * r)) & (box < r),
        "cross": (np.abs(ay - ax) < 0.25 * r) & (box < r),
        "triangle": (dy > -r) & (dy < r) & (ax < (dy + r) / 2),
        "dots": (np.hypot(dy, dx - 0.6 * r) < 0.35 * r) | (np.hypot(dy, dx + 0.6 * r) < 0.35 * r),
    }
    return masks[kind]


def synthetic_shapes(n_train: int = 2000, n_test: int = 500, size: int = 28, seed: int = 0) -> ImageData:
    """A tiny stand-in for Fashion-MNIST: 10 classes of bright shapes on a black background, with
    random position, size, brightness and noise (for tests and dry runs; no download).

    Args:
        n_train, n_test: Number of images (classes are balanced up to rounding).
        size: Side in px (at most 32).
        seed: The images depend only on it.

    Returns:
        An :class:`ImageData` with class names :data:`SHAPES`.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % len(SHAPES)
        rng.shuffle(labels)
        images = np.empty((n, size, size), np.uint8)
        for i, label in enumerate(labels):
            cy, cx = rng.uniform(-3, 3, 2) + (size - 1) / 2
            r = rng.uniform(0.25, 0.38) * size
            mask = _shape_mask(SHAPES[label], yy - cy, xx - cx, r)
            image = mask * rng.uniform(150, 255) + rng.normal(0, 12, (size, size))
            images[i] = np.clip(image, 0, 255).astype(np.uint8)
        return images, labels.astype(np.int64)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return ImageData(train_x, train_y, test_x, test_y, SHAPES, source={"name": "synthetic-shapes", "seed": seed, "size": size})


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) grey -> float (N, 1, 32, 32) in [0, 1], centred on a black border."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)[:, None]
    top, left = (SIZE - x.shape[-2]) // 2, (SIZE - x.shape[-1]) // 2
    return F.pad(x, (left, SIZE - x.shape[-1] - left, top, SIZE - x.shape[-2] - top))


# ==================================================================================================
# The whole reproduction (files)
# ==================================================================================================


@dataclass
class ReproConfig:
    """Everything a reproduction run does; saved in ``results.json`` and with every weight file."""

    classifier: NetConfig = field(default_factory=lambda: NetConfig("cnn", seed=0, epochs=1.0))
    judges: tuple[NetConfig, ...] = field(default_factory=lambda: (NetConfig("mlp", seed=1, epochs=2.0), NetConfig("resnet", seed=2, epochs=1.0)))
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    am: AMConfig = field(default_factory=AMConfig)
    neighbours: int = 3  # nearest training images reported per synthesized image
    reference_images: int = 1000  # held-out images whose nearest-training distances give the scale
    copy_percentile: float = 1.0  # see Reference

    def __post_init__(self):
        self.judges = tuple(self.judges)
        if self.classifier.arch != "cnn":
            raise ValueError("the classifier (encoder and target) must be the 'cnn' arch: the generator inverts its 'code' layer")
        names = [j.name for j in self.judges]
        if len(set(names)) != len(names) or self.classifier.name in names:
            raise ValueError(f"judges must differ from each other and from the classifier (arch or seed), got {names}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ReproConfig":
        return cls(
            classifier=NetConfig(**d["classifier"]),
            judges=tuple(NetConfig(**j) for j in d["judges"]),
            generator=GeneratorConfig(**d["generator"]),
            am=AMConfig(**d["am"]),
            **{f.name: d[f.name] for f in fields(cls) if f.name not in ("classifier", "judges", "generator", "am") and f.name in d},
        )

    def with_budget(
        self,
        epochs: float | None = None,
        generator_steps: int | None = None,
        am_steps: int | None = None,
        seeds: Sequence[int] | None = None,
        methods: Sequence[str] | None = None,
        train_images: int | None = None,
    ) -> "ReproConfig":
        """A copy with the budget changed (None keeps a value).

        Args:
            epochs: The classifier's epochs; each judge's epochs keep their ratio to it.
            generator_steps: Generator training steps.
            am_steps: Optimization steps of every method.
            seeds: Seeds per class.
            methods: Methods to run (see :data:`METHODS`).
            train_images: Train every net on the first N training images (0: all).
        """
        scale = (epochs / self.classifier.epochs) if epochs else 1.0
        nets = [self.classifier, *self.judges]
        nets = [replace(n, epochs=n.epochs * scale, **({"train_images": train_images} if train_images is not None else {})) for n in nets]
        generator = replace(self.generator, steps=generator_steps) if generator_steps else self.generator
        am = AMConfig(
            methods=tuple(methods) if methods else self.am.methods,
            seeds=tuple(seeds) if seeds else self.am.seeds,
            steps=am_steps or self.am.steps,
        )
        return replace(self, classifier=nets[0], judges=tuple(nets[1:]), generator=generator, am=am)

    @classmethod
    def quick(cls) -> "ReproConfig":
        """About 40 % of the default budget (a first look; accuracies a few points lower)."""
        return cls(
            classifier=NetConfig("cnn", seed=0, epochs=0.5),
            judges=(NetConfig("mlp", seed=1, epochs=1.0), NetConfig("resnet", seed=2, epochs=0.5)),
            generator=GeneratorConfig(steps=400),
            am=AMConfig(seeds=(0, 1)),
        )


def _save_net(model: nn.Module, config: NetConfig, norm: Normalization, data_id: str, info: dict, path: Path) -> None:
    from safetensors.torch import save_file

    meta = {"dgnam_fashion_net": json.dumps(asdict(config)), "normalization": json.dumps(asdict(norm)), "data": data_id, "training": json.dumps(info)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def load_fashion_net(path: str | Path, classes: int = 10) -> tuple[nn.Module, NetConfig, Normalization, dict]:
    """Rebuild a net saved by a reproduction run (``DIR/models/*.safetensors``).

    Returns:
        ``(model in eval mode, its NetConfig, its Normalization, metadata {"data", "training"})``.

    Example:
        >>> model, config, norm, meta = load_fashion_net("runs/fashion/models/classifier.safetensors")
        >>> target = wrap_model(model, norm.input_spec(), CLASSES)
    """
    from safetensors import safe_open

    from ..infra.hub import WeightsError, load_strict

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    if "dgnam_fashion_net" not in meta:
        raise WeightsError(f"{path} has no dgnam_fashion_net metadata: not a net saved by `dgnam repro fashion-mnist`")
    config = NetConfig(**json.loads(meta["dgnam_fashion_net"]))
    model = ARCHS[config.arch](classes)
    load_strict(model, state, what=f"{config.arch} net {path}")
    return model.eval(), config, Normalization(**json.loads(meta["normalization"])), {"data": meta.get("data"), "training": json.loads(meta.get("training", "{}"))}


def _tile(image: torch.Tensor):
    """A (C, 32, 32) image as the grey 8-bit RGB picture every net sees."""
    from ..infra.images import to_pil

    return to_pil(grey(image[None])[0].expand(3, -1, -1))


def summary_markdown(record: dict) -> str:
    """The run's headline numbers as two markdown tables (nets, then methods)."""
    nets = record["nets"]
    judges = [n for n in nets if n != "classifier"]
    lines = ["| net | role | test top-1 | train s |", "| --- | --- | ---: | ---: |"]
    for name, net in nets.items():
        lines.append(f"| {net['arch']} (seed {net['seed']}) | {'target + encoder' if name == 'classifier' else 'judge'} | {net['test_accuracy']:.3f} | {net['seconds']:.0f}{' (reused)' if net['reused'] else ''} |")
    g = record["generator"]
    lines.append("")
    lines.append(f"Generator: {g['steps']} steps, {g['seconds']:.0f} s{' (reused)' if g['reused'] else ''}; held-out PSNR {g['heldout_psnr']:.1f} dB, "
                 f"code cos {g['heldout_code_cos']:.3f}, classifier accuracy on reconstructions {g['heldout_recon_accuracy']:.3f}.")
    lines.append("")
    head = "| method | target top-1 | " + " | ".join(f"judge {nets[j]['arch']} top-1" for j in judges) + " | logit start -> final | raised | diversity (judges) | NN pixel RMS min / median | near-copies | s |"
    lines += [head, "| --- |" + " ---: |" * (len(judges) + 7)]  # method, then target, judges and 6 more columns
    for method, m in record["methods"].items():
        div = " / ".join(f"{m['judging']['diversity'].get(j, float('nan')):.2f}" for j in judges)
        lines.append(
            f"| {method} | {m['judging']['top1']['classifier']:.2f} | " + " | ".join(f"{m['judging']['top1'][j]:.2f}" for j in judges)
            + f" | {m['logit_start_mean']:.1f} -> {m['logit_final_mean']:.1f} | {m['raised_fraction']:.2f} | {div} | "
            f"{m['neighbours']['pixel_rms_min']:.3f} / {m['neighbours']['pixel_rms_median']:.3f} | {m['neighbours']['near_copies']} | {m['seconds']:.1f} |"
        )
    ref = record["reference"]
    lines.append("")
    lines.append(f"Held-out images' nearest training image: pixel RMS median {ref['pixel_rms']['p50']:.3f}, 1st percentile {ref['pixel_rms']['p1']:.3f} "
                 f"(near-copy threshold); {len(record['am']['seeds'])} seeds x {len(record['classes'])} classes per method. "
                 "Diversity: mean 1 - cos between the seeds of a class in a judge's penultimate features, centred on real images; "
                 "real held-out images of one class give " + " / ".join(f"{ref['diversity'].get(j, float('nan')):.2f}" for j in judges) + ".")
    return "\n".join(lines)


def run_repro(
    data: ImageData,
    out_dir: str | Path,
    config: ReproConfig | None = None,
    reuse: bool = False,
    progress: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Train, synthesize, judge and write a reproduction run.

    Args:
        data: The images (:func:`load_fashion_mnist`, or :func:`synthetic_shapes` for a dry run).
        out_dir: Run folder: ``models/`` (weights + configs), ``sheet_<method>.png``,
            ``neighbours.png``, ``reconstructions.png``, ``results.json``, ``summary.md``.
        config: What to train and run (default :class:`ReproConfig`).
        reuse: Load the weights already in ``out_dir/models`` when their config and data match
            (anything else is trained again).
        progress: Show tqdm bars.
        log: Called with one line per stage.

    Returns:
        The record written to ``results.json``.

    Example:
        >>> record = run_repro(load_fashion_mnist(), "runs/fashion")
        >>> print(summary_markdown(record))
    """
    from ..infra.files import write_text_atomic

    config = config or ReproConfig()
    out = Path(out_dir)
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data_id = data.identity()
    classes = list(range(len(data.classes)))
    x_train, x_test = to_tensor(data.train_x), to_tensor(data.test_x)
    y_train, y_test = torch.from_numpy(data.train_y), torch.from_numpy(data.test_y)
    norm = Normalization.of(x_train)
    timings: dict = {}

    # 1-2. classifier (encoder + target) and judges
    nets, modules = _trained_nets(config, norm, data_id, x_train, y_train, x_test, y_test, len(classes), models, timings, reuse, progress, log)
    classifier = modules["classifier"]

    # 3. generator
    t0 = time.time()
    codes_train = layer_features(classifier, "code", x_train, norm)
    n_ref = min(config.reference_images, len(x_test))
    codes_test = layer_features(classifier, "code", x_test[:n_ref], norm)
    timings["codes"] = round(time.time() - t0, 2)
    gen, generator_record = _trained_generator(models, config, norm, data_id, classifier, x_train, codes_train, reuse, progress, log)
    generator_record.update(_generator_checks(gen, classifier, norm, x_test[:n_ref], y_test[:n_ref], codes_test, data.classes, out / "reconstructions.png"))
    timings["generator"] = generator_record["seconds"]
    log(f"generator: PSNR {generator_record['heldout_psnr']:.1f} dB, recon top-1 {generator_record['heldout_recon_accuracy']:.3f}, "
        f"{generator_record['seconds']:.0f} s{' (reused)' if generator_record['reused'] else ''}")

    # 4. synthesis
    spec = norm.input_spec()
    target = wrap_model(classifier, spec, tuple(data.classes), name="fashion_cnn")
    judge_targets = {key: wrap_model(modules[key], spec, tuple(data.classes), name=key) for key in modules}
    t0 = time.time()
    results = synthesize(target, gen, classes, config.am, progress)
    timings["synthesis"] = round(time.time() - t0, 2)

    # 5. judging and neighbours
    t0 = time.time()
    layers = {"classifier": FEATURE_LAYER["cnn"], **{f"judge_{j.arch}": FEATURE_LAYER[j.arch] for j in config.judges}}
    checks = Checks(judge_targets, layers, classifier, norm, x_train, data.train_y, codes_train, x_test[:n_ref], y_test[:n_ref], codes_test,
                    data.classes, config.neighbours, config.copy_percentile)  # fmt: skip
    methods = _check_methods(results, checks, x_train, config.am.seeds[0], out)
    timings["judging"] = round(time.time() - t0, 2)
    timings["total_this_run"] = round(time.time() - started, 2)

    record = _run_record(data, data_id, norm, config, list(results), nets, generator_record, checks.reference, methods, timings)
    write_text_atomic(out / "results.json", json.dumps(record, indent=1))
    write_text_atomic(out / "summary.md", summary_markdown(record) + "\n")
    return record


def _run_record(
    data: ImageData, data_id: str, norm: Normalization, config: ReproConfig, method_names: list[str], nets: dict, generator: dict,
    reference: Reference, methods: dict, timings: dict,
) -> dict:  # fmt: skip
    """The record of ``results.json``: what ran on which data, each step's results, timings and versions."""
    from ..io.write import versions

    return {
        "what": "DGN-AM vs pixel-space activation maximization on a classifier trained here (dgnam.repro.fashion)",
        "data": {**data.source, "identity": data_id, "train_images": len(data.train_x), "test_images": len(data.test_x)},
        "classes": list(data.classes),
        "normalization": asdict(norm),
        "config": config.to_dict(),
        "am": {"seeds": list(config.am.seeds), "steps": config.am.steps, "methods": method_names},
        "nets": nets,
        "generator": generator,
        "reference": reference.summary(),
        "methods": methods,
        "timings_s": timings,
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _save_sheet(tiles: list, tile: int, columns: int, path: Path) -> None:
    """A contact sheet of ``(image, caption)`` tiles, written atomically."""
    from ..infra.images import contact_sheet
    from ..io.write import save_png

    save_png(contact_sheet(tiles, tile=tile, columns=columns), path)


def _trained_nets(
    config: ReproConfig, norm: Normalization, data_id: str, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
    y_test: torch.Tensor, n_classes: int, models: Path, timings: dict, reuse: bool, progress: bool, log: Callable[[str], None],
) -> tuple[dict[str, dict], dict[str, nn.Module]]:  # fmt: skip
    """Steps 1-2: the classifier (encoder + target) and the judges, each reused from ``models/KEY.safetensors`` when
    ``reuse`` and its config, normalization and data match, else trained and saved there; their records and modules."""
    nets: dict[str, dict] = {}
    modules: dict[str, nn.Module] = {}
    for key, net_config in [("classifier", config.classifier)] + [(f"judge_{j.arch}", j) for j in config.judges]:
        path = models / f"{key}.safetensors"
        model, info, reused = None, None, False
        if reuse and path.exists():
            saved, saved_config, saved_norm, meta = load_fashion_net(path, n_classes)
            if saved_config == net_config and saved_norm == norm and meta["data"] == data_id:
                model, info, reused = saved, meta["training"], True
            else:
                log(f"{path.name}: saved with another config or data; training again")
        if model is None:
            model, info = train_classifier(net_config, x_train, y_train, norm, n_classes, progress)
            _save_net(model, net_config, norm, data_id, info, path)
            model = load_fashion_net(path, n_classes)[0]  # a fresh and a reused run then use identical weights
        modules[key] = model
        nets[key] = {**asdict(net_config), "file": f"models/{path.name}", "reused": reused, "seconds": info["seconds"], "steps": info["steps"],
                     "test_accuracy": round(accuracy(model, x_test, y_test, norm), 4)}
        timings[key] = info["seconds"]
        log(f"{key}: {net_config.arch}, test top-1 {nets[key]['test_accuracy']:.3f}, {info['seconds']:.0f} s{' (reused)' if reused else ''}")
    return nets, modules


def _trained_generator(
    models: Path, config: ReproConfig, norm: Normalization, data_id: str, classifier: nn.Module, x_train: torch.Tensor,
    codes_train: torch.Tensor, reuse: bool, progress: bool, log: Callable[[str], None],
) -> tuple[nn.Module, dict]:  # fmt: skip
    """Step 3: the generator, reused from ``models/generator.safetensors`` when its card matches, else trained and
    saved there; returns it as loaded from the file and the start of its record."""
    path = models / "generator.safetensors"
    gen, info, reused = None, None, False
    card = json.loads(json.dumps({"generator_config": asdict(config.generator), "classifier": asdict(config.classifier), "data": data_id, "normalization": asdict(norm)}))
    if reuse and path.exists():
        meta = prior_metadata(path)
        if all(meta.get(k) == v for k, v in card.items()):
            gen, info, reused = load_generator(str(path)), meta["training"], True
        else:
            log("generator.safetensors: saved with another config, classifier or data; training again")
    if gen is None:
        gen, info = train_generator(classifier, x_train, codes_train, norm, config.generator, progress)
        save_prior(gen, path, {**card, "training": info})
        gen = load_generator(str(path))  # fp16 weights, frozen, as a reused run loads them
    return gen, {**asdict(config.generator), "file": "models/generator.safetensors", "reused": reused, "seconds": info["seconds"], "final_losses": info.get("final", {})}


def _generator_checks(
    gen: nn.Module, classifier: nn.Module, norm: Normalization, x_ref: torch.Tensor, y_ref: torch.Tensor, codes_ref: torch.Tensor,
    names: Sequence[str], sheet: Path,
) -> dict:  # fmt: skip
    """Step 3's checks: the held-out reconstruction metrics and the code bounds (returned, for the generator's record),
    and a sheet of 20 held-out images over their reconstructions G(E(x))."""
    recon = reconstruction_metrics(gen, classifier, x_ref, y_ref, codes_ref, norm)
    sample = torch.linspace(0, len(x_ref) - 1, 20).long()
    with torch.no_grad():
        pairs = [(_tile(x_ref[i]), f"real {names[int(y_ref[i])]}"[:16]) for i in sample] + [(_tile(gen(codes_ref[int(i) : int(i) + 1])[0]), "G(E(x))") for i in sample]
    _save_sheet(pairs, 64, 20, sheet)
    return {**recon, "code_bounds": {"lower_mean": round(float(gen.lower.mean()), 4), "upper_mean": round(float(gen.upper.mean()), 4)}}


def _check_methods(results: dict, checks: Checks, x_train: torch.Tensor, first_seed: int, out: Path) -> dict[str, dict]:
    """Step 5: check every method's images (:meth:`Checks.check`), write its contact sheet and ``neighbours.png``
    (the first seed's images beside their nearest training images); returns each method's record."""
    methods, neighbour_tiles = {}, []
    columns = len(checks.class_names)
    for method, (result, seconds) in results.items():
        check = checks.check(result, seconds)
        methods[method] = check.record
        neighbour_tiles += _method_sheet(method, result.images, check, x_train, first_seed, columns, out / f"sheet_{method}.png")
    _save_sheet(neighbour_tiles, 80, columns, out / "neighbours.png")
    return methods


def _method_sheet(method: str, images: torch.Tensor, check: MethodCheck, x_train: torch.Tensor, first_seed: int, columns: int, path: Path) -> list:
    """A method's contact sheet (one row per seed, one column per class, each net's verdict and the final logit);
    returns its tiles of ``neighbours.png``: the first seed's images, their nearest training images in pixels and in codes."""
    items = check.record["items"]
    pix_d, pix_i, code_d, code_i = check.pixel_distance, check.pixel_index, check.code_distance, check.code_index
    order = sorted(range(len(items)), key=lambda i: (items[i]["seed"], items[i]["class"]))
    marks = lambda i: " ".join(f"{k[0].upper() if k == 'classifier' else k.split('_')[1][0].upper()}{'+' if items[i]['pred'][k] == items[i]['class'] else '-'}" for k in items[i]["pred"])  # noqa: E731
    tiles = [(_tile(images[i]), f"{items[i]['label'][:10]} s{items[i]['seed']}\n{marks(i)} {items[i]['logit_final']:.1f}") for i in order]
    _save_sheet(tiles, 96, columns, path)
    first = [i for i in order if items[i]["seed"] == first_seed]
    neighbour_tiles = [(_tile(images[i]), f"{method}\n{items[i]['label'][:12]}") for i in first]
    neighbour_tiles += [(_tile(x_train[int(pix_i[i, 0])]), f"pixel NN\nrms {pix_d[i, 0]:.3f}") for i in first]
    neighbour_tiles += [(_tile(x_train[int(code_i[i, 0])]), f"code NN\nd {code_d[i, 0]:.2f}") for i in first]
    return neighbour_tiles


__all__ = [
    "CLASSES", "METHODS", "PIXEL_AT_32", "SHAPES", "AMConfig", "FashionCNN", "FashionMLP", "GeneratorConfig", "GreyInput",
    "ImageData", "NetConfig", "Normalization", "Reference", "ReproConfig", "TinyResNet", "accuracy", "build_generator",
    "build_net", "judge", "layer_features", "load_fashion_mnist", "load_fashion_net", "read_idx",
    "class_diversity", "reconstruction_metrics", "run_repro", "summary_markdown", "synthesize", "synthetic_shapes", "to_tensor", "train_classifier",
    "train_generator",
]  # fmt: skip
