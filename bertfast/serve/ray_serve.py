"""Ray Serve: the same app, one model session per replica, replicas across a Ray cluster.

    from bertfast.serve import ServeConfig
    from bertfast.serve.ray_serve import deployment
    from ray import serve

    app = deployment(ServeConfig("exports/minilm"), num_replicas=4, num_cpus=4)
    serve.run(app, route_prefix="/")   # TEI routes on Ray's HTTP proxy (port 8000)

Each replica is an actor that loads its own Classifier with `num_cpus` threads (or `num_gpus`
of a GPU with `device="cuda"`) and serves `build_app` through `serve.ingress`, so every route,
limit and the cross-request batching behave as under `bertfast serve`. Ray's proxy spreads
requests over replicas; each replica batches what it receives. Needs `pip install "ray[serve]"`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import require
from .config import ServeConfig


class BertfastReplica:
    """One replica: loads the export in its own process and builds the app there."""

    def __init__(self, cfg: ServeConfig | dict):
        self.cfg = ServeConfig(**cfg) if isinstance(cfg, dict) else cfg

    def __serve_build_asgi_app__(self):
        # Called by Ray on the replica after __init__: the model loads where it runs.
        from .app import build_app

        return build_app(self.cfg)


def deployment(cfg: ServeConfig, num_replicas: int | str = 1, num_cpus: float = 1, num_gpus: float = 0,
               name: str = "bertfast", **deployment_options: Any):
    """A Ray Serve application serving `cfg.export`, ready for `serve.run`.

    Args:
        cfg: server settings; `cfg.options.threads` defaults to `num_cpus` per replica and
            `cfg.workers` is ignored (replicas replace workers).
        num_replicas: replicas (each one model session), or "auto" for Ray's autoscaling.
        num_cpus: CPUs reserved per replica (also its intra-op threads).
        num_gpus: GPU share per replica (`ray_actor_options={"num_gpus": ...}`); use with
            `cfg.options.device="cuda"`. Fractions put several replicas on one GPU.
        name: deployment name.
        **deployment_options: passed to `serve.deployment` (e.g. `max_ongoing_requests`).

    Returns:
        A bound Ray Serve `Application` (the `@serve.deployment` + `@serve.ingress` class
        `BertfastReplica`, bound to the config).
    """
    serve = require("ray.serve", "ray", "ray[serve]")
    opts = cfg.options
    if opts.threads is None:
        opts = opts.replace(threads=max(1, int(num_cpus)))
    cfg = replace(cfg, workers=1, options=opts)
    # Ray's own per-replica limit must not hide bertfast's: let enough requests through for the
    # batcher to form full batches, and let our bounded queue answer 429 beyond that.
    deployment_options.setdefault("max_ongoing_requests", cfg.max_queue)
    cls = serve.deployment(
        serve.ingress()(BertfastReplica), name=name, num_replicas=num_replicas,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus}, **deployment_options,
    )
    return cls.bind(cfg)
