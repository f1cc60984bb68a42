"""bertfast: fine-tune a BERT classifier, export a proven ONNX variant, serve it fast.

Public verbs (heavy dependencies are imported only when a verb is used, so
`import bertfast` + `bertfast.Classifier` never pull in torch or transformers):

- `bertfast.train(TrainConfig(...))`            -> Path of the fine-tuned model folder
- `bertfast.export(ExportConfig(...))`          -> Path of the export folder
- `bertfast.Classifier.load(path).predict(texts)`
- `bertfast.predict(PredictConfig(...))`        -> Path of the predictions file
- `bertfast.run_benchmark(BenchConfig(...))`    -> benchmark report
- `bertfast.serve(ServeConfig(...))`            HTTP server (needs the [serve] extra)
"""

# Stage modules are named training/exporter/runtime/bench (not train/export) so that importing
# them never shadows the public verbs `bertfast.train` and `bertfast.export`.
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "train": ("bertfast.training", "train"),
    "TrainConfig": ("bertfast.training", "TrainConfig"),
    "export": ("bertfast.exporter", "export"),
    "ExportConfig": ("bertfast.exporter", "ExportConfig"),
    "Classifier": ("bertfast.runtime.classifier", "Classifier"),
    "predict": ("bertfast.runtime.predict", "predict"),
    "PredictConfig": ("bertfast.runtime.predict", "PredictConfig"),
    "run_benchmark": ("bertfast.bench", "run_benchmark"),
    "BenchConfig": ("bertfast.bench", "BenchConfig"),
    "serve": ("bertfast.serve", "serve"),
    "ServeConfig": ("bertfast.serve", "ServeConfig"),
    "RuntimeOptions": ("bertfast.runtime.options", "RuntimeOptions"),
    "quickstart": ("bertfast.quickstart", "quickstart"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'bertfast' has no attribute {name!r}")
