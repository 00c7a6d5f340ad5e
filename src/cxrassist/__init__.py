"""cxrassist: chest X-ray decision support (triage, findings with heatmaps, lungs, bones) for qualified readers.

Importing the package does no work: no torch import, no file or network access. Use the submodules
(``cxrassist.io``, ``cxrassist.models``, ``cxrassist.pipeline``...) directly.
"""

from cxrassist._version import __version__

DISCLAIMER = (
    "Decision support for a qualified reader, not a diagnosis. The findings are suggestions of a machine-learning "
    "model with the validation figures shown; they must be confirmed by a radiologist."
)

__all__ = ["DISCLAIMER", "__version__"]
