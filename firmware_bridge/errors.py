"""Errors of the wearable side: a BLE payload that does not follow its profile.

A malformed frame raises `ProfileError` with one line that names the profile, the field and what
was expected (`"polar pmd ecg frame: payload: expected a multiple of 3 bytes, got 8"`), so a
client can log it and drop the frame instead of crashing the stream.
"""
from __future__ import annotations

from edge_runtime.errors import EcgEdgeError


class ProfileError(EcgEdgeError, ValueError):
    """A BLE payload (or a value to encode) does not follow its GATT profile."""


def profile_error(profile: str, field: str, expected: str, got: object) -> ProfileError:
    """Build the one-line `ProfileError` every codec raises: profile, field, expected, got."""
    return ProfileError(f"{profile}: {field}: expected {expected}, got {got}")


class StreamError(EcgEdgeError):
    """The wearable was not found, refused to stream, or the link cannot carry its frames."""
