"""The model registry: named configurations -> builders, as data (no torch import here).

Keeping the registry torch-free lets ``cxr models`` and ``cxr --help`` list the networks without importing torch; the
builder of each spec is a ``"module:attribute"`` string imported only when a model is actually built (as entry
points are). The dependency runs one way: model modules may import this registry, it never imports them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from cxrassist.errors import UnknownModelError
from cxrassist.labels import NUM_FINDINGS

#: Names of the classifier input channels, in channel order (recorded in model cards as ``input.channels``).
CHANNEL_NAMES: tuple[str, ...] = ("radiograph", "lung_segmented", "bone_subtracted")


def channel_names(in_chans: int) -> list[str]:
    """The input channel names of a classifier with ``in_chans`` channels (1, 2 or 3)."""
    if not 1 <= in_chans <= len(CHANNEL_NAMES):
        raise ValueError(f"in_chans must be 1..{len(CHANNEL_NAMES)}, got {in_chans}")
    return list(CHANNEL_NAMES[:in_chans])


@dataclass(frozen=True)
class ModelSpec:
    """One named configuration: what it is for and the kwargs that define it."""

    name: str
    family: str  # architecture family: "densenet121", "densenet121-dual", "vgg16-unet", "bone-gan"
    task: str  # "classifier" | "triage" | "segmentation" | "bone"
    default_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""
    builder: str = field(default="", repr=False, compare=False)  # "module:callable"

    def build(self, **kwargs: Any) -> Any:
        module_name, attr = self.builder.split(":")
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(**{**self.default_kwargs, **kwargs})


_DN = "cxrassist.models.densenet:DenseNetClassifier"
_DUAL = "cxrassist.models.dual:DualBranchClassifier"
_UNET = "cxrassist.models.unet:VGG16UNet"
_GEN = "cxrassist.models.bone_gan:BoneGenerator"

_SPECS: dict[str, ModelSpec] = {}


def _add(spec: ModelSpec) -> None:
    _SPECS[spec.name] = spec


_VARIANTS = (
    ("", 1, "radiograph"),
    ("-lung", 2, "radiograph + lung-segmented"),
    ("-lung-bone", 3, "radiograph + lung-segmented + bone-subtracted"),
)
for _suffix, _chans, _what in _VARIANTS:
    _add(
        ModelSpec(
            f"dn121-512{_suffix}",
            "densenet121",
            "classifier",
            {"in_chans": _chans, "num_classes": NUM_FINDINGS},
            f"13-finding classifier, DenseNet-121 body at 128 behind a stride-4 stem, 512 input; channels: {_what}",
            _DN,
        )
    )
for _suffix, _chans, _what in _VARIANTS:
    _add(
        ModelSpec(
            f"dn121-512-dual{_suffix}",
            "densenet121-dual",
            "classifier",
            {
                "in_chans": _chans,
                "lateral_in_chans": 1,
                "num_classes": NUM_FINDINGS,
                "branch_blocks": 2,
                "lateral_dropout": 0.25,
            },
            f"13-finding classifier, frontal ({_what}) + lateral (radiograph) branches through dense block 2, "
            "fused, shared blocks 3-4; works without a lateral",
            _DUAL,
        )
    )
_add(
    ModelSpec(
        "triage-dn121-512",
        "densenet121",
        "triage",
        {"in_chans": 1, "num_classes": 1},
        "normal-vs-abnormal triage, same network as dn121-512 with one output; its body initialises the classifiers",
        _DN,
    )
)
_add(
    ModelSpec(
        "lungseg-vgg16unet",
        "vgg16-unet",
        "segmentation",
        {"in_chans": 1, "width": 1.0, "batch_norm": False},
        "lung segmentation U-Net, VGG16 encoder at real widths (ImageNet-initialisable), 1-channel input",
        _UNET,
    )
)
_add(
    ModelSpec(
        "lungseg-vgg16unet-compact",
        "vgg16-unet",
        "segmentation",
        {"in_chans": 1, "width": 0.125, "batch_norm": True},
        "lung segmentation U-Net, VGG16 layout at 1/8 width with batch norm: trains and runs on a CPU",
        _UNET,
    )
)
_add(
    ModelSpec(
        "bone-gan",
        "bone-gan",
        "bone",
        {"in_chans": 1, "base_channels": 64},
        "bone-image generator (U-Net, spectral norm, self-attention at 1/8); bone-suppressed = clip(image - bone)",
        _GEN,
    )
)
_add(
    ModelSpec(
        "bone-gan-compact",
        "bone-gan",
        "bone",
        {"in_chans": 1, "base_channels": 16},
        "bone-image generator at 1/4 width: trains and runs on a CPU",
        _GEN,
    )
)

#: Discriminator configurations for the bone GAN (training only; not in list_models()).
_DISC = "cxrassist.models.bone_gan:MultiScaleDiscriminator"
_DISCRIMINATORS: dict[str, ModelSpec] = {
    "bone-gan": ModelSpec(
        "bone-gan",
        "bone-gan",
        "bone-discriminator",
        {"in_chans": 1, "base_channels": 64, "num_scales": 3},
        builder=_DISC,
    ),
    "bone-gan-compact": ModelSpec(
        "bone-gan-compact",
        "bone-gan",
        "bone-discriminator",
        {"in_chans": 1, "base_channels": 16, "num_scales": 2},
        builder=_DISC,
    ),
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, in registry order."""
    return list(_SPECS)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(_SPECS)}") from None


def create_model(name: str, **kwargs: Any) -> Any:
    """Build a named network (random init; layers only, no file or network access).

    kwargs override the spec's defaults (tests shrink models with them). For the VGG16 U-Net, the one exception is
    ``imagenet_weights=path``: a torchvision ``vgg16`` state dict file loaded into the encoder after construction.
    """
    spec = get_model_spec(name)
    imagenet_weights = kwargs.pop("imagenet_weights", None)
    model = spec.build(**kwargs)
    if imagenet_weights is not None:
        if spec.family != "vgg16-unet":
            raise TypeError(f"imagenet_weights is only supported by the VGG16 U-Net, not {name!r}")
        from cxrassist.models.unet import init_vgg16_encoder_from_imagenet

        init_vgg16_encoder_from_imagenet(model, imagenet_weights)
    return model


def create_discriminator(name: str = "bone-gan", **kwargs: Any) -> Any:
    """The multi-scale conditional discriminator matching a bone generator configuration."""
    if name not in _DISCRIMINATORS:
        raise UnknownModelError(f"unknown discriminator {name!r}; known: {', '.join(_DISCRIMINATORS)}")
    return _DISCRIMINATORS[name].build(**kwargs)
