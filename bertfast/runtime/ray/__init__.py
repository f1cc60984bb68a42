"""Classify folders of files too big for one machine on Ray Data (`bertfast predict --engine ray`).

`classify(ClassifyConfig(export=..., input="s3://bucket/texts/*.parquet", output="s3://bucket/preds"))`
and `bertfast predict EXPORT --input ... --output DIR --engine ray` are the same call; the
inference settings are the same `RuntimeOptions` as single-process `bertfast predict`
(`ClassifyConfig(..., options=RuntimeOptions(variant="fp32"))`).
`classify_dataset` applies the model to a Ray Dataset you built yourself (any Ray Data source),
for pipelines that do more than classify.

Modules: `plan.py` sizes the actor pool so it fits the cluster and cannot hang; `fs.py` resolves
inputs and writes outputs on local disks and object stores; `config.py` checks the flags;
`engine.py` runs Ray. None imports `runtime/predict.py`: both engines share `runtime/io.py`.

Needs `pip install 'bertfast[ray]'`; Ray itself is imported only when a job runs.
"""

from __future__ import annotations

from .config import ClassifyConfig
from .engine import classify, classify_dataset

__all__ = ["ClassifyConfig", "classify", "classify_dataset"]
