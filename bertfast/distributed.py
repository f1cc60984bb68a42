"""Compatibility: the Ray engine moved to `bertfast.runtime.ray`; import it from there.

`from bertfast.distributed import ClassifyConfig, classify, classify_dataset` keeps working.
"""

from __future__ import annotations

from .runtime.ray import (  # noqa: F401
    IO_RESERVE_CPUS,
    RAY_INSTALL,
    SUCCESS,
    ClassifyConfig,
    WorkerPlan,
    classify,
    classify_dataset,
    plan_workers,
    resolve_input,
)
