"""Built-in generator registry entries. Imported lazily by :func:`dgnam.generators.catalog._ensure_builtin`."""

from __future__ import annotations

from functools import partial

from ..infra.hub import WeightSource
from .deepsim import DeePSiMGenerator, paper_bounds
from .spec import GeneratorSpec, register_generator

# DeePSiM generators (Dosovitskiy & Brox 2016) translated to PyTorch state dicts by Binxu Wang
# (huggingface.co/binxu/DeePSim_DosovitskiyBrox2016, card licence MIT). The Caffe originals
# (release_deepsim_v0.zip, lmb.informatik.uni-freiburg.de) are for research use only, commercial use
# needs the authors' consent. sha256 = the files' Git LFS oids (pool5: not found, recorded on first use).
_HF = "https://huggingface.co/binxu/DeePSim_DosovitskiyBrox2016/resolve/main/"
_DEEPSIM_LICENSE = "research only (Dosovitskiy & Brox, Uni Freiburg); PyTorch port: MIT"
_DEEPSIM = {
    # name: (CaffeNet layer, file, sha256, description)
    "deepsim_fc6": ("fc6", "upconvGAN_fc6.pt", "d92b0897c56bf8d8d082dc9ea9f0a806490d3da064a7929e4ff813fa95623875",
                    "the paper's default prior: 4096-d CaffeNet fc6 code -> 256 px image"),
    "deepsim_fc7": ("fc7", "upconvGAN_fc7.pt", "b2c70c0ebfd060e13594556eb37d76c288a4c37431e3ec5307316758cf2b1ec2",
                    "4096-d CaffeNet fc7 code -> 256 px image"),
    "deepsim_fc8": ("fc8", "upconvGAN_fc8.pt", "b49d115d8252bdb2a20605e1491f380c3d6c4f1dd24113f2a9f6353069a40421",
                    "1000-d CaffeNet fc8 code -> 256 px image"),
    "deepsim_pool5": ("pool5", "upconvGAN_pool5.pt", None,
                      "256x6x6 CaffeNet pool5 code -> 256 px image (convolutional front end)"),
}

for _name, (_layer, _file, _sha, _desc) in _DEEPSIM.items():
    register_generator(
        GeneratorSpec(
            name=_name,
            builder=partial(DeePSiMGenerator, _layer),
            weights=WeightSource(filename=_file, sha256=_sha, urls=(_HF + _file,), license=_DEEPSIM_LICENSE),
            encoder=f"caffenet:{_layer}",
            license=_DEEPSIM_LICENSE,
            description=f"DeePSiM generator (Dosovitskiy & Brox 2016): {_desc}.",
            bounds=paper_bounds(_layer),
            output_size=(256, 256),  # the paper's generators: 256 px, centre-cropped to 227 for CaffeNet
        )
    )

# dgnam's own priors, trained here and shipped inside the package (weights and model card in
# src/dgnam/data; the safetensors file carries the architecture, code statistics and the DGN-AM settings
# measured for it: its header's `dgn_am`, the one place they are stored, read by
# dgnam.methods.dgn_am.dgn_am_settings; `dgnam generators` prints them. The paper's step of 8 saturates these
# codes: BENCHMARKS.md, "The shipped default"). The middle-block prior is EfficientNet-Lite0's default (`dgnam visualize` and
# `dgnam sample` use it unless told otherwise): with the random transforms it carries, its judge top-5
# rate matched the best pixel baseline's on the 50-class quality benchmark (top-1 94 vs 98 %); the
# last-block one stayed far below (BENCHMARKS.md, "Priors by layer" and "The shipped default").
_OWN_LICENSE = "MIT (dgnam); trained on the offline pool, whose images keep their own licences (the pool's POOL.md)"


def _own_prior(name: str, sha256: str, encoder: str, description: str, default: bool = False) -> GeneratorSpec:
    """A prior shipped as package data (``dgnam/data/NAME.safetensors``, model card ``NAME.md`` beside it)."""
    return GeneratorSpec(
        name=name,
        builder=None,
        weights=WeightSource(filename=f"{name}.safetensors", sha256=sha256, package_data=("dgnam", f"data/{name}.safetensors"), license=_OWN_LICENSE),
        encoder=encoder,
        license=_OWN_LICENSE,
        default=default,
        description=f"{description} (model card: dgnam/data/{name}.md).",
        output_size=(128, 128),
    )


register_generator(_own_prior(
    "lite0_blocks15_conv", "8bbcb5237ace208fc18dc9b3777934fcaa3a45031f94c98b70fd7341ce38a465", "efficientnet_lite0:_blocks.15",
    "dgnam prior for EfficientNet-Lite0: 320x7x7 last-block code -> 128 px image, conv front end, 2.2M parameters, "
    "trained 915 steps on a CPU on the offline pool",
))  # fmt: skip
register_generator(_own_prior(
    "lite0_blocks7_conv_resize", "10447ea152effc3c78324cbb414cf30606de505f6cae2a491ebb8c31ec7223fc", "efficientnet_lite0:_blocks.7",
    "dgnam prior for EfficientNet-Lite0: 80x14x14 middle-block code -> 128 px image, conv front end, resize-convolutions, "
    "0.37M parameters, trained 4000 steps on a CPU on the offline pool; DGN-AM through it ascends through random "
    "transforms of the image (carried setting)",
    default=True,
))  # fmt: skip
