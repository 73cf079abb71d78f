"""What every room of the library stands on: one-line errors, atomic writes, limits on inputs."""

from forensics.core.errors import AccessError, ArchiveError, DetectorError, ForensicsError, HubError, JobError, MediaError
from forensics.core.io import atomic_path, read_json, sha256_file, write_atomic
from forensics.core.limits import DEFAULT_LIMITS, MediaLimits, ZipLimits

__all__ = ["DEFAULT_LIMITS", "AccessError", "ArchiveError", "DetectorError", "ForensicsError", "HubError", "JobError",
           "MediaError", "MediaLimits", "ZipLimits", "atomic_path", "read_json",
           "sha256_file", "write_atomic"]
