"""Quality measures of synthesized images: pure computation, no files (``benchmarks/quality.py`` does I/O).

What each measure answers:

- :func:`judge_topk`: does a net recognise the class? Run it with a *judge* (EfficientNet-Lite1 or
  -Lite2), a net that was never optimized against, or it only measures how well the optimizer fooled
  its own target.
- :func:`relative_activation` / :func:`natural_max_activations`: how hard is the unit driven,
  compared with the strongest natural image (Nguyen et al. 2016 report activations relative to the
  top ImageNet image)?
- :func:`spectrum_slope`: does the image have the 1/f^2 power spectrum of photographs, or the
  high-frequency excess of adversarial patterns (flatter slope) or blur (steeper)?
- :func:`mean_saturation`: pixel-space AM tends to oversaturated colours; photos sit much lower.
- :func:`diversity`: do different seeds of one unit give different images? (:func:`image_diversity` and
  :func:`sample_diversity`: of PPGN-h samples' mean-centred pixels, as ``dgnam sample`` records it)
- :func:`frechet_distance`: how far are two sets of features, as Gaussians (FID's formula)?

Images are accepted in the two layouts of the package: a ``torch.Tensor`` is (N, 3, H, W) in
[0, 1] (as :class:`~dgnam.methods.base.AMResult` holds them); a ``numpy`` array is (N, H, W, 3), uint8
in [0, 255] (as a pool's ``images.npy``) or float in [0, 1].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Mapping, Sequence, Union

import numpy as np
import torch

from ..core.hooks import OUTPUT, capture
from ..nets import Target
from ..core.units import Unit, read_unit

if TYPE_CHECKING:  # for annotations only
    from ..methods.ppgn import SampleResult

Images = Union[torch.Tensor, np.ndarray]

#: Luma weights (ITU-R BT.601) for the greyscale image of :func:`spectrum_slope`.
LUMA = (0.299, 0.587, 0.114)

#: Frequency band of :func:`spectrum_slope`, in cycles per pixel (Nyquist = 0.5). Below 0.04 (about
#: 9 cycles per 224 px image) the fit would see the Hann window's smearing of the strong lowest
#: frequencies and the layout of the scene; above 0.25 (half Nyquist) it would see resampling,
#: demosaicing and JPEG losses, aliasing and 8-bit quantization noise instead of image structure.
SLOPE_BAND = (0.04, 0.25)


# --------------------------------------------------------------------------------------------------
# Layout helpers
# --------------------------------------------------------------------------------------------------


def _to_nhwc(images: Images) -> np.ndarray:
    """Either layout -> float64 (N, H, W, 3) in [0, 1]."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a tensor of shape (N, 3, H, W), got {tuple(images.shape)}")
        return images.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected an array of shape (N, H, W, 3), got {array.shape} (tensors are (N, 3, H, W))")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    return array.astype(np.float64)


def _to_nchw(images: Images) -> torch.Tensor:
    """Either layout -> float32 (N, 3, H, W) tensor in [0, 1]."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a tensor of shape (N, 3, H, W), got {tuple(images.shape)}")
        return images.detach().float()
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected an array of shape (N, H, W, 3), got {array.shape} (tensors are (N, 3, H, W))")
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float() / scale


def _device(target: Target) -> torch.device:
    return next(target.buffers()).device


@torch.no_grad()
def _forward_layers(net: Target, layers: Sequence[str], images: Images, batch_size: int) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Per batch: (start index, {layer: output}), ``"output"`` being what the net returns."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    device = _device(net)
    for start in range(0, len(images), batch_size):
        batch = _to_nchw(images[start : start + batch_size]).to(device)
        with capture(net.model, layers) as acts:
            out = net(batch)
        found = dict(acts)
        found[OUTPUT] = out
        yield start, found


# --------------------------------------------------------------------------------------------------
# Recognition by a judge
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def judge_pass(judge: Target, images: Images, labels: Sequence[int], feature_layer: str | None = None, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One forward pass of a classifier over images: ranks and top classes, and features on the way.

    Args:
        judge: A classifier (its output: class scores).
        images: N images (layouts of :mod:`dgnam.eval.metrics`).
        labels: N class indices; -1 where an image has no class (its rank and top class are -1).
        feature_layer: A layer whose flattened output is returned too (None: no features).
        batch_size: Images per forward pass.

    Returns:
        ``(ranks, preds, features)``: int arrays (N,) (rank 1 = top; ties count in the label's
        favour) and float32 (N, D) or None.

    Example:
        >>> ranks, preds, feats = judge_pass(load_net("efficientnet_lite1"), images, labels, "pool")
    """
    labels = np.asarray(list(labels), dtype=np.int64)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    ranks, preds = np.full(len(images), -1, dtype=np.int64), np.full(len(images), -1, dtype=np.int64)
    feats = []
    for start, acts in _forward_layers(judge, [feature_layer] if feature_layer else [], images, batch_size):
        logits = acts[OUTPUT].float().cpu()
        if feature_layer:
            feats.append(acts[feature_layer].flatten(1).float().cpu().numpy())
        lab = torch.from_numpy(labels[start : start + len(logits)])
        if int(lab.max()) >= logits.shape[1]:
            raise ValueError(f"labels must lie in 0-{logits.shape[1] - 1}, the outputs of {judge.name}")
        has = lab >= 0
        own = logits.gather(1, lab.clamp_min(0)[:, None])
        ranks[start : start + len(logits)] = torch.where(has, 1 + (logits > own).sum(1), -1).numpy()
        preds[start : start + len(logits)] = torch.where(has, logits.argmax(1), -1).numpy()
    if not feats:  # no feature layer asked for, or no images
        return ranks, preds, None
    return ranks, preds, np.concatenate(feats)


@torch.no_grad()
def judge_topk(net: Target, images: Images, labels: Sequence[int], ks: Sequence[int] = (1, 5), batch_size: int = 32) -> dict:
    """Rank of each image's label among ``net``'s outputs, and the top-k hit rates.

    Args:
        net: The classifier; its output must be class scores (logits or probabilities). Images of any
            size are brought to its native size by :class:`~dgnam.nets.Target` itself.
        images: N images (see the module docstring for the layouts).
        labels: N class indices.
        ks: The k of each hit rate to report.
        batch_size: Images per forward pass.

    Returns:
        A dict with ``"rank"`` (int array (N,): 1 for the top class; ties count in the label's favour,
        i.e. rank = 1 + number of classes scored strictly higher), ``"pred"`` (int array (N,): the
        top class), and ``"top{k}"`` (float: fraction of images with rank <= k) for each k.

    Example:
        >>> judge = load_net("efficientnet_lite1")  # never optimized against
        >>> judge_topk(judge, result.images, [u.index for u in result.units])["top5"]
    """
    labels = [int(c) for c in labels]
    if min(labels, default=0) < 0:  # judge_pass reads -1 as "no class"; here every image has one
        raise ValueError(f"labels must lie in 0-(classes - 1), the net's outputs; got {min(labels)}")
    rank, pred, _ = judge_pass(net, images, labels, None, batch_size)
    out: dict = {"rank": rank, "pred": pred}
    for k in ks:
        out[f"top{k}"] = float((rank <= k).mean()) if len(rank) else float("nan")
    return out


# --------------------------------------------------------------------------------------------------
# Image statistics
# --------------------------------------------------------------------------------------------------


def spectrum_slope(images: Images, band: tuple[float, float] = SLOPE_BAND, bins: int = 16) -> np.ndarray:
    """Per image, the slope of log power against log spatial frequency of its greyscale version.

    The greyscale image (BT.601 luma of the [0, 1] values) has its mean removed, is multiplied by a
    2-D Hann window (so the image's borders do not add a cross of power at all frequencies) and
    Fourier transformed. The power ``|F|^2`` is averaged over ``bins`` annuli evenly spaced in log
    frequency across ``band``, and a line is fitted to log10(mean power) against log10(mean
    frequency) of the annuli. Log spacing weights each octave equally (linear rings would let the
    many high-frequency rings decide the fit).

    Natural photographs give about -2 (power ~ 1/f^2, Field 1987; van der Schaaf & van Hateren 1996)
    with a spread of roughly -1.6 to -3; white noise gives 0; a blurred image is steeper. The slope
    is measured in the image's own pixels: an image upsampled from a smaller one has lost its high
    frequencies and reads steeper.

    Args:
        images: N images, at least 16 px a side.
        band: ``(low, high)`` frequencies of the fit, in cycles per pixel (see :data:`SLOPE_BAND`).
        bins: Number of log-spaced annuli in the band (empty ones are skipped).

    Returns:
        float array (N,) of slopes; NaN for a constant image (no power to fit).
    """
    lo, hi = band
    if not 0 < lo < hi <= 0.5 * np.sqrt(2):
        raise ValueError(f"band must satisfy 0 < low < high <= 0.707 cycles/pixel, got {band}")
    x = _to_nhwc(images)
    n, h, w, _ = x.shape
    if min(h, w) < 16:
        raise ValueError(f"images must be at least 16 px a side for a spectrum slope, got {h}x{w}")
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    edges = np.geomspace(lo, hi, bins + 1)
    which = np.digitize(freq, edges) - 1  # annulus of each frequency; -1 or `bins` outside the band
    masks = [which == b for b in range(bins)]
    masks = [m for m in masks if m.any()]
    if len(masks) < 2:
        raise ValueError(f"images of {h}x{w} px have fewer than 2 frequencies in the band {band}; use larger images")
    log_f = np.log10([freq[m].mean() for m in masks])
    window = np.outer(np.hanning(h), np.hanning(w))
    slopes = np.empty(n)
    for start in range(0, n, 64):  # chunks bound the memory of the complex spectra
        grey = x[start : start + 64] @ np.asarray(LUMA)
        flat = grey.std(axis=(1, 2)) < 1e-6  # constant up to rounding: no power to fit
        grey = (grey - grey.mean(axis=(1, 2), keepdims=True)) * window
        power = np.abs(np.fft.fft2(grey)) ** 2
        mean_power = np.stack([power[:, m].mean(1) for m in masks], 1)  # (chunk, annuli)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.log10(mean_power)
        for i, row in enumerate(log_p):
            ok = np.isfinite(row)
            slopes[start + i] = np.polyfit(log_f[ok], row[ok], 1)[0] if ok.sum() >= 2 and not flat[i] else np.nan
    return slopes


def mean_saturation(images: Images) -> np.ndarray:
    """Per image, the mean HSV saturation ``(max - min) / max`` over pixels (0 where max is 0).

    Grey, black and white pixels have saturation 0; a pure primary or secondary colour has 1.

    Returns:
        float array (N,) in [0, 1].
    """
    x = _to_nhwc(images).clip(0.0, 1.0)
    high, low = x.max(-1), x.min(-1)
    sat = np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)
    return sat.mean(axis=(1, 2))


# --------------------------------------------------------------------------------------------------
# Activation relative to natural images
# --------------------------------------------------------------------------------------------------


def relative_activation(acts: Sequence[float] | np.ndarray | torch.Tensor, natural_max: Sequence[float] | np.ndarray | torch.Tensor | float) -> np.ndarray:
    """Activation as a fraction of the unit's highest activation over natural images.

    1.0 means "as strong as the best natural image"; DGN-AM's images usually exceed it. The ratio only
    reads that way when the natural maximum is positive, so it is NaN where ``natural_max <= 0``.

    Args:
        acts: Activation of each image (N,).
        natural_max: The same unit's natural maximum, per image (N,) or one value
            (:func:`natural_max_activations`).

    Returns:
        float array (N,).
    """
    a = np.asarray(acts.detach().cpu() if isinstance(acts, torch.Tensor) else acts, dtype=np.float64)
    m = np.asarray(natural_max.detach().cpu() if isinstance(natural_max, torch.Tensor) else natural_max, dtype=np.float64)
    a, m = np.broadcast_arrays(a, m)
    return np.divide(a, m, out=np.full(a.shape, np.nan), where=m > 0)


@torch.no_grad()
def natural_max_activations(target: Target, units: Sequence[Unit], images: Images, batch_size: int = 32) -> np.ndarray:
    """For each unit, its highest activation over a set of natural images.

    Units are read as in the optimization (:func:`~dgnam.core.units.read_unit`: the centre of a map by
    default), with the images brought to the target's native size by the target.

    Args:
        target: The net the units belong to.
        units: The units (repeats are fine).
        images: Natural images, e.g. a pool's uint8 (N, H, W, 3) ``images.npy`` (a memory map works:
            it is read one batch at a time).
        batch_size: Images per forward pass.

    Returns:
        float array (len(units),): the maximum of each unit.

    Example:
        >>> pool, _ = load_pool("pool/", mmap=True)
        >>> top = natural_max_activations(net, units, pool[:1000])
        >>> relative_activation(result.final, top)
    """
    if len(images) == 0:
        raise ValueError("no natural images given")
    units = list(units)
    layers = list(dict.fromkeys(u.layer for u in units))
    best = np.full(len(units), -np.inf)
    for _, acts in _forward_layers(target, layers, images, batch_size):
        for j, unit in enumerate(units):
            values = read_unit(acts[unit.layer], [unit] * len(acts[OUTPUT]))
            best[j] = max(best[j], float(values.max()))
    return best


# --------------------------------------------------------------------------------------------------
# Feature-set statistics
# --------------------------------------------------------------------------------------------------


def _as_2d(features, what: str) -> np.ndarray:
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2:
        f = f.reshape(len(f), -1)
    if not np.isfinite(f).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return f


def diversity(features_by_unit: Mapping[object, np.ndarray | torch.Tensor] | Sequence[np.ndarray | torch.Tensor]) -> float:
    """Mean pairwise cosine distance between the seeds of each unit, averaged over units.

    Args:
        features_by_unit: For each unit, the (seeds, D) features of its images (e.g. a judge's
            penultimate layer), as a dict or a list; features with more axes are flattened.
            Units with fewer than two seeds are skipped.

    Returns:
        The mean over units of each unit's mean ``1 - cos`` over its pairs of seeds: 0 when all
        seeds give the same features, about 1 for unrelated (orthogonal) features. NaN when no unit
        has two seeds.
    """
    groups = features_by_unit.values() if isinstance(features_by_unit, Mapping) else features_by_unit
    per_unit = []
    for feats in groups:
        f = _as_2d(feats, "features")
        if len(f) < 2:
            continue
        norm = np.linalg.norm(f, axis=1, keepdims=True)
        f = np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)
        cos = f @ f.T
        i, j = np.triu_indices(len(f), k=1)
        per_unit.append(float(np.mean(1.0 - cos[i, j])))
    return float(np.mean(per_unit)) if per_unit else float("nan")


def sample_diversity(result: "SampleResult") -> dict:
    """:func:`diversity` of the samples of each unit (every chain, every kept step);
    see :func:`image_diversity`."""
    groups: dict[str, list[torch.Tensor]] = {}
    for c, u in enumerate(result.units):
        groups.setdefault(str(u), []).append(result.images[c])
    return image_diversity({name: torch.cat(parts) for name, parts in groups.items()})


def image_diversity(images_by_unit: dict[str, torch.Tensor]) -> dict:
    """Diversity of each unit's images (N, 3, H, W): :func:`diversity` of the pixels of
    each image minus the image's own mean, so ``1 - cos`` is one minus the images' correlation:
    0 for identical samples, about 1 for unrelated ones.

    Returns:
        ``{"pixels": mean over units, "per_unit": {unit: value}}`` (NaN where a unit has one image).
    """

    def centred(images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1).float()
        return flat - flat.mean(dim=1, keepdim=True)

    per_unit = {name: diversity([centred(images)]) for name, images in images_by_unit.items()}
    return {"pixels": diversity([centred(images) for images in images_by_unit.values()]), "per_unit": per_unit}


def _trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray, method: str) -> float:
    """``Tr(sqrt(sigma_a @ sigma_b))`` for covariance matrices (symmetric, positive semi-definite)."""
    if method == "scipy":
        from scipy import linalg

        covmean = linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(covmean).all():  # singular product: nudge, as pytorch-fid does
            eps = 1e-6 * np.eye(len(sigma_a))
            covmean = linalg.sqrtm((sigma_a + eps) @ (sigma_b + eps))
        return float(np.real(np.trace(covmean)))
    # sigma_a @ sigma_b is similar to the symmetric PSD matrix s @ sigma_b @ s with s = sqrt(sigma_a),
    # so its square root's trace is the sum of the square roots of that matrix's eigenvalues.
    vals, vecs = np.linalg.eigh(sigma_a)
    root_a = (vecs * np.sqrt(vals.clip(min=0))) @ vecs.T
    inner = root_a @ sigma_b @ root_a
    return float(np.sqrt(np.linalg.eigvalsh((inner + inner.T) / 2).clip(min=0)).sum())


def frechet_distance(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor, method: str = "auto") -> float:
    """Fréchet distance between Gaussian fits of two feature sets (the formula of FID).

        d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrt(S_a S_b))

    Args:
        feats_a: (N_a, D) features, N_a >= 2.
        feats_b: (N_b, D) features, N_b >= 2.
        method: How ``Tr sqrt(S_a S_b)`` is computed: ``"scipy"`` (``scipy.linalg.sqrtm``, as
            pytorch-fid), ``"eigh"`` (numpy only: eigenvalues of ``sqrt(S_a) S_b sqrt(S_a)``, the same
            number and better conditioned) or ``"auto"`` (scipy when importable).

    Returns:
        The squared distance d^2 (what FID reports), >= 0 up to rounding.

    Note:
        With D features the covariances need well over D samples to be estimated; with fewer, the
        value is biased upwards and depends on N. Compare sets of equal size only.
    """
    if method not in ("auto", "scipy", "eigh"):
        raise ValueError(f"method must be 'auto', 'scipy' or 'eigh', got {method!r}")
    if method == "auto":
        try:
            import scipy.linalg  # noqa: F401

            method = "scipy"
        except ImportError:
            method = "eigh"
    a, b = _as_2d(feats_a, "feats_a"), _as_2d(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each set needs at least 2 samples for a covariance")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a = np.atleast_2d(np.cov(a, rowvar=False))
    sigma_b = np.atleast_2d(np.cov(b, rowvar=False))
    trace = np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * _trace_sqrt_product(sigma_a, sigma_b, method)
    return float(np.sum((mu_a - mu_b) ** 2) + trace)


__all__ = [
    "LUMA", "SLOPE_BAND", "diversity", "frechet_distance", "image_diversity", "sample_diversity", "judge_pass", "judge_topk", "mean_saturation",
    "natural_max_activations", "relative_activation", "spectrum_slope",
]  # fmt: skip
