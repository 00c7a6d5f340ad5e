"""Exception types of cxrassist.

Every refusal of an input has its own type so that callers (CLI, service, batch) can tell them apart, and one
human-readable line (``str(exc)``) that names the problem. The CLI prints that line and exits non-zero; the service
answers it as a 4xx JSON error.
"""

from __future__ import annotations


class CxrError(Exception):
    """Base class of every error cxrassist raises on purpose."""

    #: Process exit code used by the CLI for this kind of error.
    exit_code: int = 1


class InputError(CxrError):
    """The input cannot be analysed. Raised before any model runs."""

    exit_code = 2


class MissingFileError(InputError):
    """The path does not exist or is not a regular file."""


class EmptyFileError(InputError):
    """The file has zero bytes."""


class TruncatedFileError(InputError):
    """The file ends before its pixel data is complete."""


class CorruptFileError(TruncatedFileError):
    """The file's header or pixel data is malformed (a value of the wrong type or length, an unknown VR...)."""


class NotAnImageError(InputError):
    """The file is neither a DICOM nor a raster image we can decode."""


class NoPixelDataError(InputError):
    """A DICOM object without pixel data (structured report, presentation state, ...)."""


class MultiFrameError(InputError):
    """A multi-frame or 3-D object (CT/MR volume, cine): a radiograph is one 2-D frame."""


class UnsupportedModalityError(InputError):
    """A DICOM modality other than projection radiography (CR, DX, DR...)."""


class ColourPhotoError(InputError):
    """A colour image whose channels differ: a photograph or a screenshot, not a radiograph."""


class ImageTooSmallError(InputError):
    """An image smaller than the minimum side length we accept."""


class DecompressionBombError(InputError):
    """An image with more pixels than the configured limit."""


class FileTooLargeError(InputError):
    """A file larger than the configured byte limit."""


class MissingDecoderError(InputError):
    """A compressed transfer syntax whose decoder plug-in is not installed."""


class NotChestXRayError(InputError):
    """The image does not look like a frontal chest radiograph (the reason says why)."""


class OutOfDistributionError(NotChestXRayError):
    """The image is unlike the chest films the models were trained on (the out-of-distribution gate refused it)."""


class WeightsError(CxrError):
    """Model weights are missing, corrupt or do not match their model card."""

    exit_code = 3


class CardError(WeightsError, ValueError):
    """A model card field is missing or malformed (``cxrassist.weights.settings`` reads every card)."""


class HashMismatchError(WeightsError):
    """The sha256 of a weights file differs from the one recorded in its model card."""


class ConfigError(CxrError):
    """A training/evaluation configuration is invalid (unknown key, wrong type, bad value)."""


class DatasetError(CxrError):
    """A dataset manifest or official dataset tree is missing, malformed or yields no usable records."""


class ServeConfigError(CxrError):
    """The service's configuration is unsafe or invalid (e.g. a non-loopback binding without an API token)."""

    exit_code = 4


class UnknownModelError(CxrError):
    """A model name that is neither in the registry nor a shipped weights directory."""


class OutputError(CxrError):
    """A report cannot be written where asked (the folder is not ours, an unknown format...)."""
