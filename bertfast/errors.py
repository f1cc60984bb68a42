"""Error types. Every message says what went wrong *and* what to do about it.

The CLI catches `BertfastError` and prints its message on one line (exit code 2), so a user
never sees a traceback for a problem they can fix themselves.
"""

from __future__ import annotations


class BertfastError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, wrong flag)."""


class DataError(BertfastError):
    """The labeled or unlabeled text could not be used as given."""


class ModelError(BertfastError):
    """The model folder / checkpoint cannot be loaded or is not a sequence classifier."""


class ExportError(BertfastError):
    """Export, optimization, quantization or validation failed."""


class ManifestError(ModelError):
    """`bertfast.json` is damaged or hand-edited: a field has the wrong type, names a file outside
    the export folder, or disagrees with the graph. The message names the field."""


class InferenceError(BertfastError):
    """ONNX Runtime failed while running a batch (out of memory, a damaged variant, ...)."""


class ProviderError(BertfastError):
    """The requested execution provider (device) is not usable."""


class MissingDependencyError(BertfastError):
    """An optional dependency is missing; the message names the exact `pip install`."""


def require(module: str, extra: str, package: str | None = None):
    """Import an optional dependency or raise an error naming the install command.

    Args:
        module: importable module name, e.g. ``"torch"``.
        extra: the bertfast extra that provides it, e.g. ``"train"``.
        package: the PyPI name when it differs from the module name.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        hint = f"pip install 'bertfast[{extra}]'"
        if extra == "train":
            hint = "pip install torch==2.13.0 && " + hint
        raise MissingDependencyError(
            f"`{package or module}` is needed for this command but is not installed ({e}); run: {hint}"
        ) from None
