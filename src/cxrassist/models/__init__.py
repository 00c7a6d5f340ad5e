"""The networks: a torch-free registry of named configurations and lazily imported implementations.

``create_model(name, **kw)`` builds layers only (no file or network access); ``list_models()`` names them.
Implementations: :mod:`.densenet` (classifier, triage), :mod:`.dual` (frontal + lateral), :mod:`.unet` (lungs),
:mod:`.bone_gan` (bone generator + multi-scale discriminator), :mod:`.transfer` (weight import).
"""

from __future__ import annotations

import importlib
from typing import Any

from cxrassist.models.registry import (
    CHANNEL_NAMES,
    ModelSpec,
    channel_names,
    create_discriminator,
    create_model,
    get_model_spec,
    list_models,
)

_LAZY = {
    "DenseNetClassifier": "densenet",
    "DualBranchClassifier": "dual",
    "VGG16UNet": "unet",
    "init_vgg16_encoder_from_imagenet": "unet",
    "BoneGenerator": "bone_gan",
    "MultiScaleDiscriminator": "bone_gan",
    "BoneGAN": "bone_gan",
    "DiscriminatorOutput": "bone_gan",
    "create_bone_gan": "bone_gan",
    "suppress_bones": "bone_gan",
    "import_densenet121_state_dict": "transfer",
    "init_classifier_from_triage": "transfer",
    "adapt_input_conv": "transfer",
    "read_state_dict": "transfer",
    "ImportReport": "transfer",
}

__all__ = [
    "CHANNEL_NAMES",
    "ModelSpec",
    "channel_names",
    "create_discriminator",
    "create_model",
    "get_model_spec",
    "list_models",
    *_LAZY,
]


def __getattr__(name: str) -> Any:  # PEP 562: torch is imported only when an implementation is asked for
    if name in _LAZY:
        return getattr(importlib.import_module(f"cxrassist.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cxrassist.models' has no attribute {name!r}")
