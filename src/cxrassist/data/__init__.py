"""Datasets for training and evaluation (the inference path never imports this package).

* :mod:`.records` - :class:`Record`, the one case type every loader returns;
* :mod:`.manifest` - the generic ``manifest.csv`` layout (``../shared/data/*``), several manifests combined;
* :mod:`.official` / :mod:`.segsets` - CheXpert, MIMIC-CXR-JPG, ChestX-ray14, Montgomery, Shenzhen, JSRT, BSE-JSRT;
* :mod:`.splits` - patient-disjoint splits with an explicit seed;
* :mod:`.images` / :mod:`.cache` - the one image loader, letterbox cache, pre-resized copies;
* :mod:`.augment` / :mod:`.dataset` - joint augmentation and the one Dataset class (import torch);
* :mod:`.derived` - cached lung / bone channels for the classifiers.
"""

from cxrassist.data.manifest import load_manifest, load_manifests
from cxrassist.data.records import Record, describe, select

__all__ = ["Record", "describe", "load_manifest", "load_manifests", "select"]
