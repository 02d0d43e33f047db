"""dgnam's own generator priors: DeePSiM-style up-convolutional nets trained here (``dgnam train-generator``).

The architecture follows the DeePSiM generators of Dosovitskiy & Brox (2016) at a size that a CPU
can train. Two front ends:

- ``front="fc"`` (their fc6/fc7 generators): fully connected layers to a 4x4 map; the code may be any
  shape (the pooled feature vector, our fc6 analogue).
- ``front="conv"`` (their pool5 generator): 3x3 convolutions on a spatial code (C, H, W) at its own
  resolution, resized to the next power of two; no giant fully connected layer, so a prior on a
  320x7x7 code stays a few MB instead of 40+.

Then up-convolution (stride 2; or resize + convolution, ``upsample="resize"``) + convolution pairs
with LeakyReLU(0.3), ending in RGB in [0, 1]. The
code's per-unit mean and std are stored with the weights and used both to normalize the input and
to set the paper's clipping range [0, mean + 3 std].
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .base import Generator


@dataclass
class PriorConfig:
    """Architecture of a :class:`PriorGenerator`; saved in the weight file's metadata."""

    encoder: str = "efficientnet_lite0"  # net whose features are inverted
    layer: str = "pool"  # encoder layer giving the code (pool: the pooled 1280-d head features, our fc6)
    code_shape: tuple[int, ...] = (1280,)
    output_size: int = 128  # px; the loop resizes to the target's input (a power-of-two multiple of the start map,
    # e.g. 224 = 14 x 16 for a 14x14 code: then G's output is the target's own input, no resize)
    front: str = "fc"  # "fc": fully connected to a 4x4 map; "conv": convolutions on a spatial (C, H, W) code
    fc_width: int = 1024  # width of the hidden fully connected layer (DeePSiM: 4096); fc front only
    channels: tuple[int, ...] = (256, 256, 128, 64, 32, 16)  # start map (4x4 for fc), then one entry per doubling
    slope: float = 0.3  # LeakyReLU slope of DeePSiM
    bound_sigmas: float = 3.0  # upper clipping bound = mean + bound_sigmas * std (lower bound: 0 or the minimum)
    output: str = "sigmoid"  # "sigmoid", or "linear": 0.5 + conv output, clamped to [0, 1] outside training
    # (a linear output cannot saturate, as a sigmoid did once the feature loss came in)
    upsample: str = "deconv"  # "deconv": DeePSiM's 4x4 stride-2 up-convolution; "resize": nearest-neighbour x2
    # then a 3x3 convolution (Odena et al. 2016), which cannot leave the checkerboard that up-convolutions can

    def __post_init__(self):
        self.code_shape = tuple(self.code_shape)
        self.channels = tuple(self.channels)
        if self.output not in ("sigmoid", "linear"):
            raise ValueError(f"output must be 'sigmoid' or 'linear', not {self.output!r}")
        if self.front not in ("fc", "conv"):
            raise ValueError(f"front must be 'fc' or 'conv', not {self.front!r}")
        if self.upsample not in ("deconv", "resize"):
            raise ValueError(f"upsample must be 'deconv' or 'resize', not {self.upsample!r}")
        if self.front == "fc" or len(self.code_shape) == 3:  # a conv front's code shape may still come from its layer
            self.check_shapes()

    def check_shapes(self) -> None:
        """The channel list must fit the start map and the output size; a conv front needs a (C, H, W) code."""
        if self.front == "conv" and len(self.code_shape) != 3:
            raise ValueError(f"front 'conv' needs a spatial code (C, H, W), not shape {self.code_shape}: use front 'fc'")
        start = self.start_size
        doublings = math.log2(self.output_size / start)
        if doublings != int(doublings) or doublings < 0 or len(self.channels) != int(doublings) + 1:
            raise ValueError(f"output_size {self.output_size} needs {int(math.log2(max(self.output_size, start) / start)) + 1} "
                             f"channel entries ({start}x{start} start map, then one per doubling; output a power-of-two multiple of {start})")

    @property
    def start_size(self) -> int:
        """Side of the first feature map: 4 for the fc front; for conv, the code's own side when the
        output is a power-of-two multiple of it (a 14x14 code -> 224 px, no resize anywhere), else the
        code's side rounded up to a power of two (a 7x7 code -> 8x8 -> 128 px)."""
        if self.front == "fc":
            return 4
        side = max(self.code_shape[1:])
        ratio = self.output_size / side
        if side >= 4 and ratio >= 1 and ratio == int(ratio) and int(ratio) & (int(ratio) - 1) == 0:
            return side
        return 1 << max(2, (side - 1).bit_length())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "PriorConfig":
        return cls(**json.loads(text))


def code_bounds(mean: torch.Tensor, std: torch.Tensor, minimum: torch.Tensor, sigmas: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's clipping range from code statistics: lower = min(0, data minimum),
    upper = mean + ``sigmas`` * std."""
    return minimum.clamp(max=0.0), mean + sigmas * std


class PriorGenerator(Generator):
    """Code (encoder features) -> RGB image in [0, 1] at ``config.output_size``.

    Buffers ``code_mean``/``code_std`` (per code unit, over the training pool) are saved with the
    weights: they normalize the input and give the clipping bounds.
    """

    def __init__(self, config: PriorConfig | None = None):
        config = config if config is not None else PriorConfig()  # a fresh default per call, never shared
        config.check_shapes()
        size = config.output_size
        super().__init__(config.code_shape, (size, size))
        self.config = config
        c = config.channels
        code_dim = math.prod(config.code_shape)
        act = lambda: nn.LeakyReLU(config.slope)  # noqa: E731
        self.register_buffer("code_mean", torch.zeros(config.code_shape))
        self.register_buffer("code_std", torch.ones(config.code_shape))
        self.register_buffer("code_min", torch.zeros(config.code_shape))
        if config.front == "fc":
            self.fc = nn.Sequential(nn.Linear(code_dim, config.fc_width), act(), nn.Linear(config.fc_width, c[0] * 16), act())
        else:  # DeePSiM pool5-style: convolutions at the code's own resolution
            self.front = nn.Sequential(nn.Conv2d(config.code_shape[0], c[0], 3, padding=1), act(), nn.Conv2d(c[0], c[0], 3, padding=1), act())
        layers: list[nn.Module] = []
        for i in range(len(c) - 1):
            if config.upsample == "deconv":
                layers += [nn.ConvTranspose2d(c[i], c[i + 1], 4, stride=2, padding=1), act()]
            else:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c[i], c[i + 1], 3, padding=1), act()]
            if c[i + 1] >= 64:  # a 3x3 convolution after each up-convolution, as DeePSiM, where it is affordable
                layers += [nn.Conv2d(c[i + 1], c[i + 1], 3, padding=1), act()]
        layers.append(nn.Conv2d(c[-1], 3, 3, padding=1))
        self.up = nn.Sequential(*layers)

    def set_code_stats(self, mean: torch.Tensor, std: torch.Tensor, minimum: torch.Tensor) -> None:
        """Store the code statistics of the training data and derive the clipping bounds."""
        self.code_mean.copy_(mean.view(self.code_shape))
        self.code_std.copy_(std.view(self.code_shape).clamp_min(1e-6))
        self.code_min.copy_(minimum.view(self.code_shape))
        self.update_bounds()

    def update_bounds(self) -> None:
        """Clipping range from the stored statistics (:func:`code_bounds`, the paper's [0, 3 sigma])."""
        lower, upper = code_bounds(self.code_mean, self.code_std, self.code_min, self.config.bound_sigmas)
        self.set_bounds(lower=lower, upper=upper)

    def random_code(self, seeds, std: float = 1.0) -> torch.Tensor:
        """Initial codes from the per-unit Gaussian of the data, ``mean + std * code_std * N(0, 1)``:
        our analogue of the paper's N(0, 1) for fc6, whose units have roughly unit scale."""
        noise = super().random_code(seeds, std)
        return self.code_mean + self.code_std * noise

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        # Units that never varied in the data (std at the 1e-6 floor) had z = 0 throughout training and
        # stay at 0: otherwise their 1e6-fold gradients dominate DGN-AM's step normalization (mean |g|)
        # and every live unit's step shrinks to nothing.
        z = (code - self.code_mean) / self.code_std * (self.code_std > 1e-6)
        start = self.config.start_size
        if self.config.front == "fc":
            h = self.fc(z.flatten(1)).view(-1, self.config.channels[0], start, start)
        else:
            h = self.front(z)
            if h.shape[-2:] != (start, start):
                h = F.interpolate(h, size=(start, start), mode="bilinear", align_corners=False)
        out = self.up(h)
        if self.config.output == "sigmoid":
            return torch.sigmoid(out)
        # linear: the losses see the raw image while training; users get it clamped to [0, 1]
        return out + 0.5 if self.training else (out + 0.5).clamp(0.0, 1.0)


def save_prior(gen: PriorGenerator, path: str | Path, extra: dict | None = None) -> str:
    """Write weights + config as safetensors (fp16 weights, fp32 statistics); return the sha256."""
    from safetensors.torch import save_file

    from ..infra.hub import sha256_file

    state = {k: (v.half() if k.startswith(("fc.", "front.", "up.")) else v.float()).contiguous() for k, v in gen.state_dict().items()}
    meta = {"dgnam_prior_config": gen.config.to_json(), **{k: json.dumps(v, sort_keys=True) for k, v in (extra or {}).items()}}
    save_file(state, str(path), metadata=meta)
    canonical_header(path)
    return sha256_file(path)


def canonical_header(path: str | Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, so that equal tensors and metadata
    give equal bytes (and one sha256): the writer orders the header's entries differently on every save.
    The tensor data and their offsets are unchanged; the header is padded with spaces to 8 bytes, as
    the format's own writer does."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    Path(path).write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n :])


def load_prior(path: str | Path) -> PriorGenerator:
    """Rebuild a :class:`PriorGenerator` from a safetensors file written by :func:`save_prior`."""
    from safetensors import safe_open

    from ..infra.hub import WeightsError, load_strict

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}
    except Exception as exc:
        raise WeightsError(f"cannot read {path} as a safetensors prior ({exc})") from exc
    if "dgnam_prior_config" not in meta:
        raise WeightsError(f"{path} has no dgnam_prior_config metadata: not a dgnam prior")
    try:
        config = PriorConfig.from_json(meta["dgnam_prior_config"])
        defaults = json.loads(meta.get("dgn_am", "{}"))  # measured DGN-AM settings (save_prior(extra={"dgn_am": ...}))
    except (ValueError, TypeError) as exc:  # broken JSON, or a config with unknown or bad fields
        raise WeightsError(f"{path}: its dgnam_prior_config/dgn_am metadata is broken ({str(exc)[:160]}): "
                           f"export the prior again (train-generator --export) or restore the file") from exc
    gen = PriorGenerator(config)
    load_strict(gen, state, what=f"prior {path}")
    gen.update_bounds()
    gen.dgn_am = defaults
    return gen.eval()


def prior_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


__all__ = ["PriorConfig", "PriorGenerator", "code_bounds", "save_prior", "load_prior", "prior_metadata"]
