"""Deepfake Forensics Studio: faces in, fake probabilities and explanation maps out."""

from forensics.core import DetectorError, ForensicsError, MediaError

__version__ = "0.1.0"
__all__ = ["DetectorError", "ForensicsError", "MediaError", "__version__"]
