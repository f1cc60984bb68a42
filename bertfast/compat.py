"""The transformers versions bertfast trains and exports with, checked in one place.

This module sits below every stage: training, the exporter and anything else that needs
transformers call `require_transformers()` instead of importing it, so an unsupported release
fails up front with the pip line that fixes it. It imports only `bertfast.errors` (itself a
leaf), so any stage may import it without pulling another stage in.
"""

from __future__ import annotations

import re

from .errors import MissingDependencyError, require

# Proven by CI on both ends (.ci/run: 4.57 and the newest 5.x); the floor is the oldest release
# whose eager attention and config API the exporter and trainer use unchanged.
TRANSFORMERS_MIN = (4, 48)
TRANSFORMERS_BELOW = (6, 0)
TRANSFORMERS_RANGE = ">=4.48,<6"


def _version_tuple(version: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def require_transformers():
    """Import transformers, or raise naming the supported range when its version is outside it.

    The export and train paths call this instead of importing transformers themselves, so an
    unsupported release fails up front with the fix, not halfway through with a traceback.
    """
    transformers = require("transformers", "train")
    version = getattr(transformers, "__version__", "0")
    if not TRANSFORMERS_MIN <= _version_tuple(version) < TRANSFORMERS_BELOW:
        raise MissingDependencyError(
            f"transformers {version} is installed, but bertfast's export and training support "
            f"transformers{TRANSFORMERS_RANGE}; run: pip install 'transformers{TRANSFORMERS_RANGE}'"
        )
    return transformers
