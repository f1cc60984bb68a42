"""Sizing the Ray actor pool: `plan_workers` (pure: no Ray needed, tested on made-up clusters).

Sizing never hangs: the pool is checked against the resources of each node before anything
starts, and one CPU is always left to Ray Data's own list/read/write tasks (an actor pool holding
every CPU starves them and the job waits forever: ray-project/ray#44687). Asking for GPUs on a
cluster without them fails at once instead of waiting for GPUs that never come.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from ...errors import BertfastError

log = logging.getLogger(__name__)

# Ray Data's ListFiles operator asks for one whole CPU (not configurable), and reads and writes
# ask for one each; this much stays free of actors so they can always be scheduled.
IO_RESERVE_CPUS = 1.0


@dataclass(frozen=True)
class WorkerPlan:
    """How the actor pool is sized on a cluster (see `plan_workers`)."""

    workers: int
    cpus: float  # logical CPUs each actor reserves in Ray
    threads: int  # ONNX Runtime intra-op threads per actor
    gpus: float


def plan_workers(
    nodes: list[dict[str, float]],
    workers: int | None = None,
    threads: int | None = None,
    gpus_per_worker: float = 0.0,
) -> WorkerPlan:
    """Size the actor pool so that it fits the cluster and cannot deadlock Ray Data.

    Args:
        nodes: resources of each alive node, e.g. `[{"CPU": 16, "GPU": 2}, ...]`.
        workers: actors wanted (None: as many as fit).
        threads: CPUs (= ONNX Runtime threads) per actor (None: share what is left).
        gpus_per_worker: GPUs per actor (0 < g <= 1), or 0 for CPU actors.

    Returns:
        The plan. One CPU stays free of actors (`IO_RESERVE_CPUS`) for Ray Data's own tasks.
        Actors get fractional CPUs only on a one-node cluster: across nodes, whole CPUs keep
        the free CPU in one piece on some node instead of scattered halves no task can use.

    Raises:
        BertfastError: the request cannot fit; the message says what the cluster has.
    """
    cpus = [float(n.get("CPU", 0)) for n in nodes]
    gpus = [float(n.get("GPU", 0)) for n in nodes]
    if not nodes or sum(cpus) <= 0:
        raise BertfastError("the Ray cluster reports no CPUs; check `ray status` (or --address).")
    # Reserve I/O CPUs on the largest node, where a task asking for one whole CPU can run.
    big = max(range(len(cpus)), key=cpus.__getitem__)
    free = list(cpus)
    free[big] = max(0.0, free[big] - IO_RESERVE_CPUS)
    if gpus_per_worker > 0:
        return _gpu_plan(cpus, gpus, free, workers, threads, gpus_per_worker)
    return _cpu_plan(cpus, free, workers, threads)


def _gpu_plan(cpus: list[float], gpus: list[float], free: list[float], workers: int | None, threads: int | None,
              gpus_per_worker: float) -> WorkerPlan:
    """`plan_workers` for GPU actors: as many as the GPUs hold, each with a CPU to tokenize."""
    total_cpu, total_gpu, usable, single_node = sum(cpus), sum(gpus), sum(free), len(cpus) == 1
    if total_gpu == 0:
        raise BertfastError(
            f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has no GPUs "
            f"(resources: {total_cpu:g} CPUs, 0 GPUs), so the actors would wait forever. "
            "Join a cluster with GPU nodes (--address), or drop --gpus-per-worker to run on CPU."
        )
    fit_gpu = sum(math.floor(g / gpus_per_worker + 1e-9) for g in gpus)
    if workers is not None and workers > fit_gpu:
        raise BertfastError(
            f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g} needs {workers * gpus_per_worker:g} GPUs "
            f"but the cluster has {total_gpu:g} ({fit_gpu} such workers fit); lower --workers or --gpus-per-worker."
        )
    n = workers or fit_gpu
    # A GPU actor needs a CPU to tokenize; one each if there is room, else a fair share.
    cpu_each = float(threads) if threads else min(1.0, usable / n if single_node else 1.0)
    plan = WorkerPlan(n, cpu_each, max(1, math.ceil(cpu_each - 1e-9)), gpus_per_worker)
    _check_cpu_fit(plan, free, total_cpu, explicit_threads=threads is not None)
    return plan


def _cpu_plan(cpus: list[float], free: list[float], workers: int | None, threads: int | None) -> WorkerPlan:
    """`plan_workers` for CPU actors: one single-threaded session per core unless told otherwise."""
    total_cpu, usable, single_node = sum(cpus), sum(free), len(cpus) == 1
    if threads is None and workers is None and single_node:
        # One single-threaded session per core (the best throughput per core for batch
        # inference); the cores' share of the I/O reserve makes each actor's CPU a fraction.
        workers = max(1, math.floor(total_cpu))
    if threads is not None:
        cpu_each = float(threads)
    elif workers is not None:
        cpu_each = usable / workers
        if not single_node:
            # The most whole CPUs per actor with which `workers` actors still pack into the nodes.
            cpu_each = float(next((c for c in range(math.floor(cpu_each), 0, -1) if _fits(free, c) >= workers), 0))
    else:
        cpu_each = 1.0
    if workers is None:
        workers = _fits(free, cpu_each) if cpu_each > 0 else 1
        if workers == 0:
            raise BertfastError(
                f"--threads {threads}: no node has {cpu_each:g} CPUs free after the {IO_RESERVE_CPUS:g} kept for "
                f"Ray Data's read/write tasks (nodes: {', '.join(f'{c:g}' for c in cpus)} CPUs); lower --threads."
            )
    if cpu_each == 0 and not single_node:
        raise BertfastError(
            f"--workers {workers}: more workers than the {usable:g} CPUs left after the {IO_RESERVE_CPUS:g} kept "
            f"for Ray Data's read/write tasks on this {len(cpus)}-node cluster; lower --workers."
        )
    # ORT threads match the CPUs reserved, rounded up so a 0.5-CPU actor still gets a thread.
    plan = WorkerPlan(workers, cpu_each, max(1, math.ceil(cpu_each - 1e-9)), 0.0)
    _check_cpu_fit(plan, free, total_cpu, explicit_threads=threads is not None)
    if plan.workers * plan.threads > total_cpu:
        log.warning("%d workers x %d threads on %g CPUs: the cores are oversubscribed; fewer --workers is "
                    "usually faster", plan.workers, plan.threads, total_cpu)
    return plan


def _fits(free: list[float], cpu_each: float) -> int:
    return sum(math.floor(f / cpu_each + 1e-9) for f in free)


def _check_cpu_fit(plan: WorkerPlan, free: list[float], total_cpu: float, explicit_threads: bool) -> None:
    if plan.cpus == 0:
        return
    if _fits(free, plan.cpus) < plan.workers:
        what = f"--workers {plan.workers} x --threads {plan.cpus:g}" if explicit_threads else f"--workers {plan.workers}"
        raise BertfastError(
            f"{what} needs {plan.workers * plan.cpus:g} CPUs but the Ray cluster has {total_cpu:g}, of which "
            f"{IO_RESERVE_CPUS:g} stays free for Ray Data's read/write tasks (an actor pool holding every CPU "
            "hangs, ray-project/ray#44687); lower --workers or --threads."
        )


