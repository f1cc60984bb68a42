#!/usr/bin/env python
"""`bertfast serve` under load: cross-request batching vs a plain per-request server vs offline.

Starts each server as a child process on loopback, drives it with N concurrent keep-alive clients
that each send ONE text per request (`POST /predict {"inputs": text}`), and reports throughput
(texts/s) and p50/p90/p99 latency per concurrency level, for:

- `bertfast serve` (dynamic batching across requests, `bertfast.serve`);
- `plain`: FastAPI + `Classifier.predict_proba([text])` per request in FastAPI's thread pool,
  no cross-request batching (implemented below; what most hand-written servers do);
- offline: `Classifier.predict_proba` on the same texts in one call, in this process, after the
  servers have stopped (the ceiling a server can approach).

Then an overload phase (a tiny `--max-queue`, many more clients than it holds: 429s, and
bounded latency for accepted requests) and, with `--soak-seconds`, a memory soak sampling the
server's RSS. Timed per request: the HTTP round trip on loopback, JSON both ways, queueing,
tokenization and the model. Not timed: server start, warm-up requests. The clients run on the
same machine as the server and take CPU from it; the record says how many CPUs there were.

    python benchmarks/serve_bench.py --export exports/minilm --name minilm --seconds 10
    python benchmarks/serve_bench.py --export EXPORT --name smoke --seconds 2 --levels 1,8,64,256  # ~30 s

A change to the server itself is measured with `--trees before=DIR,after=DIR` (two source trees,
e.g. git worktrees of two commits): both servers start, and the rounds load each in turn (ABBA),
instead of the `--servers` comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# -- servers --------------------------------------------------------------------------------


def plain_server(export: str, port: int, threads: int) -> None:
    """The baseline: one `predict_proba` call per request, concurrent calls share the session."""
    import uvicorn
    from fastapi import FastAPI

    from bertfast.runtime.classifier import Classifier

    clf = Classifier.load(export, device="cpu", threads=threads)
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: dict):  # sync: FastAPI runs it in its thread pool, as a typical server does
        row = clf.predict_proba([body["inputs"]])[0]
        return [{"label": clf.labels[j], "score": float(row[j])} for j in np.argsort(-row)]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# What each server's clients POST: TEI's /predict for bertfast and the plain server; Infinity's
# own classification route (OpenAI-style body) for Infinity.
REQUESTS = {
    "batching": ("/predict", lambda text: {"inputs": text}),
    "plain": ("/predict", lambda text: {"inputs": text}),
    "infinity": ("/classify", lambda text: {"model": "m", "input": [text]}),
}


def start(kind: str, export: Path, threads: int, extra: list[str] = (), infinity: tuple | None = None,
          tree: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env, cwd = None, ROOT
    if kind == "infinity":
        # Infinity (infinity-emb) serves the PyTorch checkpoint the export came from, with its own
        # dynamic batching (`--batch-size`); torch gets the same thread count as the others.
        binary, model_dir = infinity
        cmd = [binary, "v2", "--model-id", str(model_dir), "--served-model-name", "m", "--engine", "torch",
               "--device", "cpu", "--port", str(port), "--batch-size", "32", "--no-bettertransformer",
               "--log-level", "warning"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    elif kind == "plain":
        cmd = [sys.executable, __file__, "--plain-server", str(export), "--port", str(port), "--threads", str(threads)]
    else:
        cmd = [sys.executable, "-m", "bertfast.serve", str(Path(export).resolve()), "--port", str(port), "--device",
               "cpu", "--threads", str(threads), *extra]
        if tree is not None:  # `python -m` puts the working directory first on sys.path: run from the tree
            env, cwd = {**os.environ, "PYTHONPATH": str(tree)}, tree
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{kind} server exited: {proc.stderr.read()[-2000:]}")
        try:
            import urllib.request

            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
        if time.monotonic() - t0 > 120:
            proc.kill()
            raise SystemExit(f"{kind} server did not answer /health within 120 s")


def stop(proc: subprocess.Popen) -> float:
    """SIGTERM, wait; returns the seconds the graceful shutdown took."""
    t0 = time.perf_counter()
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.perf_counter() - t0


# -- load -----------------------------------------------------------------------------------


def arun(coro):
    """Run the load on uvloop when installed (as uvicorn serves): less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def load(url: str, texts: list[str], clients: int, seconds: float, max_requests: int,
               kind: str = "batching") -> dict:
    """`clients` loops, one text per request, until `seconds` pass or `max_requests` are sent.

    The load generator shares the CPUs with the server, so it must cost as little as possible:
    each client keeps one HTTP/1.1 keep-alive connection and writes pre-encoded requests
    (`wrk`-style), parsing only the status line and Content-Length of each response. aiohttp
    cost about as much CPU per request as the server itself on 2 cores, which capped the
    measured server at ~60% of offline on short texts.
    """
    import json

    route, body = REQUESTS[kind]
    host, port = url.removeprefix("http://").split(":")
    payloads = [json.dumps(body(t)).encode() for t in texts]
    head = f"POST {route} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: "
    requests = [head.encode() + f"{len(b)}\r\n\r\n".encode() + b for b in payloads]
    lat_ok, lat_other, statuses = [], [], {}
    sent = 0
    deadline = time.perf_counter() + seconds

    async def client():
        nonlocal sent
        reader = writer = None
        while time.perf_counter() < deadline and sent < max_requests:
            req = requests[sent % len(requests)]
            sent += 1
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(req)
                status, close = await _response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                status, close = type(e).__name__, True
            dt = time.perf_counter() - t0
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            (lat_ok if status == 200 else lat_other).append(dt)
            if close and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    out = {"clients": clients, "requests": sent, "seconds": round(elapsed, 2), "status": statuses,
           "texts_per_s": round(len(lat_ok) / elapsed, 1)}
    out.update(_percentiles(lat_ok, "ok_"))
    if lat_other:
        out.update(_percentiles(lat_other, "rejected_"))
    return out


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, connection closes) of one HTTP/1.1 response; its body is read and dropped."""
    headers = await reader.readuntil(b"\r\n\r\n")
    lines = headers.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


def _percentiles(lat: list[float], prefix: str) -> dict:
    if not lat:
        return {}
    a = np.asarray(lat) * 1000
    return {f"{prefix}p50_ms": round(float(np.percentile(a, 50)), 2), f"{prefix}p90_ms": round(float(np.percentile(a, 90)), 2),
            f"{prefix}p99_ms": round(float(np.percentile(a, 99)), 2), f"{prefix}max_ms": round(float(a.max()), 2)}


def batch_stats(url: str) -> tuple[float, float]:
    """(texts, model calls) so far, from the server's Prometheus metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    vals = {}
    for line in text.splitlines():
        for name in ("bertfast_batch_texts_sum", "bertfast_batch_texts_count"):
            if line.startswith(name + " "):
                vals[name] = float(line.split()[1])
    return vals.get("bertfast_batch_texts_sum", 0.0), vals.get("bertfast_batch_texts_count", 0.0)


def run_levels(kind: str, export: Path, texts: list[str], args, threads: int) -> list[dict]:
    infinity = (args.infinity_bin, args.model_dir) if kind == "infinity" else None
    proc, url = start(kind, export, threads, ["--max-wait-ms", str(args.max_wait_ms), *args.serve_args.split()],
                      infinity)
    rows: list[dict] = []
    # The offline rate is measured right before each level and after the last (this machine is
    # shared and drifts): each level's ratio is against the mean of the two next to it.
    ref = OfflineRate(export, texts, threads, seconds=max(2.0, args.seconds / 2)) if kind == "batching" else None
    try:
        last = ref.measure() if ref else None
        for clients in args.levels:
            arun(load(url, texts, clients, args.warmup, args.max_requests, kind))  # warm-up, not recorded
            for rnd in range(1, args.rounds + 1):  # rounds alternate with the offline measure
                before = batch_stats(url) if kind == "batching" else None
                row = arun(load(url, texts, clients, args.seconds, args.max_requests, kind))
                if before is not None:
                    after = batch_stats(url)
                    calls = after[1] - before[1]
                    row["mean_texts_per_model_call"] = round((after[0] - before[0]) / calls, 2) if calls else None
                row["server"], row["round"] = kind, rnd
                if ref:
                    now = ref.measure()
                    row["offline_adjacent_texts_per_s"] = round((last + now) / 2, 1)
                    row["of_offline"] = round(row["texts_per_s"] / row["offline_adjacent_texts_per_s"], 3)
                    row["offline_call_texts"] = len(ref.sample)
                    last = now
                rows.append(row)
                print(f"{kind:9s} {clients:4d} clients (round {rnd}): {row['texts_per_s']:8.1f} texts/s  "
                      f"({row.get('of_offline', '-')} of offline)  "
                      f"p50 {row.get('ok_p50_ms')} ms  p99 {row.get('ok_p99_ms')} ms  {row['status']}", flush=True)
    finally:
        shutdown = stop(proc)
        if ref:
            ref.close()
    print(f"{kind:9s} SIGTERM -> exit in {shutdown:.2f} s", flush=True)
    return rows


def run_trees(export: Path, texts: list[str], args, threads: int) -> list[dict]:
    """`bertfast serve` from each of `args.trees` (label=source tree), all started at once and
    loaded in turn: each round runs every tree once, in an order reversed every other round
    (ABBA), so drift on a shared machine hits every tree alike."""
    servers = {label: start("batching", export, threads, ["--max-wait-ms", str(args.max_wait_ms),
                                                          *args.serve_args.split()], tree=tree)
               for label, tree in args.trees.items()}
    rows: list[dict] = []
    try:
        for clients in args.levels:
            for _, url in servers.values():
                arun(load(url, texts, clients, args.warmup, args.max_requests))  # warm-up, not recorded
            for rnd in range(1, args.rounds + 1):
                for label in (list(servers) if rnd % 2 else list(servers)[::-1]):
                    proc, url = servers[label]
                    before, cpu = batch_stats(url), _cpu_seconds(proc.pid)
                    row = arun(load(url, texts, clients, args.seconds, args.max_requests))
                    cpu = _cpu_seconds(proc.pid) - cpu
                    after = batch_stats(url)
                    calls = after[1] - before[1]
                    row["mean_texts_per_model_call"] = round((after[0] - before[0]) / calls, 2) if calls else None
                    # Less sensitive to other load on the machine than texts/s: the server's own CPU.
                    row["server_cpu_ms_per_text"] = round(cpu * 1000 / (after[0] - before[0]), 3) if calls else None
                    row["server"], row["round"] = label, rnd
                    rows.append(row)
                    print(f"{label:9s} {clients:4d} clients (round {rnd}): {row['texts_per_s']:8.1f} texts/s  "
                          f"p50 {row.get('ok_p50_ms')} ms  p99 {row.get('ok_p99_ms')} ms  {row['status']}", flush=True)
    finally:
        for proc, _ in servers.values():
            stop(proc)
    return rows


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc; psutil elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system


def tree_summary(rows: list[dict], labels: list[str]) -> list[dict]:
    """Per level and tree: mean, min, max and sample standard deviation of texts/s over the
    rounds, and each tree's mean over the first tree's."""
    out = []
    for clients in sorted({r["clients"] for r in rows}):
        base = None
        for label in labels:
            rates = [r["texts_per_s"] for r in rows if r["clients"] == clients and r["server"] == label]
            p50 = [r["ok_p50_ms"] for r in rows if r["clients"] == clients and r["server"] == label]
            cpu = [r["server_cpu_ms_per_text"] for r in rows if r["clients"] == clients and r["server"] == label
                   and r.get("server_cpu_ms_per_text")]
            mean = float(np.mean(rates))
            base = mean if base is None else base
            row = {"clients": clients, "server": label, "rounds": len(rates), "texts_per_s_mean": round(mean, 1),
                   "texts_per_s_min": min(rates), "texts_per_s_max": max(rates),
                   "texts_per_s_std": round(float(np.std(rates, ddof=1)), 1) if len(rates) > 1 else None,
                   "p50_ms_mean": round(float(np.mean(p50)), 2), "vs_first": round(mean / base, 3),
                   "server_cpu_ms_per_text_median": round(float(np.median(cpu)), 3) if cpu else None}
            if label != labels[0]:  # the same round's runs are back to back (ABBA): the drift-free comparison
                first = {r["round"]: r["texts_per_s"] for r in rows if r["clients"] == clients and r["server"] == labels[0]}
                ratios = [r["texts_per_s"] / first[r["round"]] for r in rows
                          if r["clients"] == clients and r["server"] == label and r["round"] in first]
                row.update(paired_ratio_median=round(float(np.median(ratios)), 3),
                           paired_ratio_geomean=round(float(np.exp(np.mean(np.log(ratios)))), 3),
                           paired_ratio_q25_q75=[round(float(q), 3) for q in np.percentile(ratios, [25, 75])])
            out.append(row)
    return out


def _tree_record(label: str, tree: Path) -> dict:
    """What a tree is, without its path: commit and whether its working tree differs from it."""
    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(tree), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"label": label, "commit": git("rev-parse", "--short", "HEAD") or None,
            "subject": git("log", "-1", "--format=%s")[:120] or None,
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no", "bertfast"))}


class OfflineRate:
    """`Classifier.predict_proba` texts/s in this process, on demand (the server is idle
    meanwhile: no client is sending). Calls are as large as `seconds` of work allows, between
    256 and 2048 texts (the final `offline` row's call): short texts sorted over a large call
    pad far less than over a server's calls of a few dozen, and that is the ceiling to compare
    with, not a smaller call's."""

    def __init__(self, export: Path, texts: list[str], threads: int, seconds: float):
        from bertfast.runtime.classifier import Classifier

        self.clf = Classifier.load(export, device="cpu", threads=threads)
        self.seconds = seconds
        warm = [texts[i % len(texts)] for i in range(256)]
        self.clf.predict_proba(warm[:64])  # warm-up
        t0 = time.perf_counter()
        self.clf.predict_proba(warm)
        rate = len(warm) / (time.perf_counter() - t0)
        n = int(min(2048, max(256, rate * seconds)))
        self.sample = [texts[i % len(texts)] for i in range(n)]

    def measure(self) -> float:
        n, t0 = 0, time.perf_counter()
        while (el := time.perf_counter() - t0) < self.seconds:
            self.clf.predict_proba(self.sample)
            n += len(self.sample)
        return n / el

    def close(self) -> None:
        self.clf.close()


def offline(export: Path, texts: list[str], threads: int, n: int) -> dict:
    from bertfast.runtime.classifier import Classifier

    sample = [texts[i % len(texts)] for i in range(n)]
    with Classifier.load(export, device="cpu", threads=threads) as clf:
        clf.predict_proba(sample[:256])  # warm-up
        t0 = time.perf_counter()
        clf.predict_proba(sample)
        dt = time.perf_counter() - t0
    return {"texts": n, "seconds": round(dt, 3), "texts_per_s": round(n / dt, 1)}


def overload(export: Path, texts: list[str], args, threads: int) -> dict:
    extra = ["--max-queue", str(args.overload_queue), "--max-inputs", "1", "--max-wait-ms", str(args.max_wait_ms),
             *args.serve_args.split()]
    proc, url = start("batching", export, threads, extra)
    try:
        row = arun(load(url, texts, args.overload_clients, args.seconds, args.max_requests))
    finally:
        stop(proc)
    row["max_queue"] = args.overload_queue
    print(f"overload  {args.overload_clients} clients, --max-queue {args.overload_queue}: {row['status']}  "
          f"accepted p99 {row.get('ok_p99_ms')} ms", flush=True)
    return row


def soak(export: Path, texts: list[str], args, threads: int) -> dict:
    import psutil

    proc, url = start("batching", export, threads, ["--max-wait-ms", str(args.max_wait_ms), *args.serve_args.split()])
    samples: list[tuple[float, float]] = []

    async def sample(stop_at):
        p = psutil.Process(proc.pid)
        t0 = time.perf_counter()
        while time.perf_counter() < stop_at:
            samples.append((round(time.perf_counter() - t0, 1), p.memory_info().rss / 2**20))
            await asyncio.sleep(1.0)

    async def both():
        stop_at = time.perf_counter() + args.soak_seconds
        return (await asyncio.gather(load(url, texts, 64, args.soak_seconds, 10**9), sample(stop_at)))[0]

    try:
        row = arun(both())
    finally:
        stop(proc)
    rss = [r for _, r in samples]
    row.update(rss_mb_first=round(rss[0], 1), rss_mb_last=round(rss[-1], 1), rss_mb_max=round(max(rss), 1),
               rss_samples=[(t, round(r, 1)) for t, r in samples])
    print(f"soak      {args.soak_seconds} s: RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (max {max(rss):.0f})", flush=True)
    return row


# -- report ---------------------------------------------------------------------------------


def environment(threads: int) -> dict:
    from bertfast.hardware import cpu_info, relevant_flags
    from bertfast.utils import library_versions, usable_cpus

    return {"cpu": cpu_info()["brand"], "arch": platform.machine(), "cpu_flags": relevant_flags(),
            "usable_cpus": usable_cpus(), "server_threads": threads, "python": platform.python_version(),
            "versions": library_versions(("onnxruntime", "tokenizers", "fastapi", "uvicorn", "uvloop", "numpy")),
            "loadavg_start": list(os.getloadavg()),
            "client": "raw HTTP/1.1 keep-alive clients on asyncio (uvloop when installed), one process on the "
                      "same machine (shares the CPUs with the server)"}


def markdown(report: dict) -> str:
    lines = [f"# bertfast serve: {report['name']}", "",
             f"Export `{report['export']}`, {report['texts']} texts from `{report['data']}`, "
             f"{report['env']['usable_cpus']} usable CPUs ({report['env']['cpu']}), server threads "
             f"{report['env']['server_threads']}, `--max-wait-ms {report['max_wait_ms']}`. One text per request; "
             "timed: loopback HTTP round trip, JSON, queueing, tokenization, model.", "",
             *([report["note"], ""] if report.get("note") else []),
             f"Offline `Classifier.predict_proba` on the same texts: **{report['offline']['texts_per_s']} texts/s**.", "",
             *(["`x offline`: the run's texts/s over the offline rate measured right before and after it "
                "(mean of the two; `predict_proba` in this process on calls of "
                f"{_call_texts(report)} texts, server idle), so drift on this shared machine hits both sides alike. "
                "Each level runs `round`s, alternating with the offline measure.", ""] if not report.get("trees") else []),
             "| server | clients | round | texts/s | x offline | p50 ms | p90 ms | p99 ms | texts per model call | statuses |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["levels"]:
        ratio = f"{r['of_offline']:.2f} (of {r['offline_adjacent_texts_per_s']})" if "of_offline" in r else ""
        lines.append(f"| {r['server']} | {r['clients']} | {r.get('round', 1)} | {r['texts_per_s']} | {ratio} | {r.get('ok_p50_ms')} | "
                     f"{r.get('ok_p90_ms')} | {r.get('ok_p99_ms')} | {r.get('mean_texts_per_model_call', '')} | "
                     f"{r['status']} |")
    if report.get("trees"):
        lines += ["", "Source trees (loaded in turn, ABBA order per round): " + "; ".join(
            f"`{t['label']}` = {t['commit']} ({t['subject']})" + (" + uncommitted changes" if t["uncommitted_changes"] else "")
            for t in report["trees"]) + ".", "",
            "| clients | server | rounds | texts/s mean | min | max | std | p50 ms mean | server CPU ms/text (median) "
            "| vs first (means) | vs first, same round: median (geomean) [q25-q75] |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {r['clients']} | {r['server']} | {r['rounds']} | {r['texts_per_s_mean']} | {r['texts_per_s_min']} | "
                  f"{r['texts_per_s_max']} | {r['texts_per_s_std']} | {r['p50_ms_mean']} | "
                  f"{r['server_cpu_ms_per_text_median']} | {r['vs_first']} | "
                  + (f"{r['paired_ratio_median']} ({r['paired_ratio_geomean']}) [{r['paired_ratio_q25_q75'][0]}-"
                     f"{r['paired_ratio_q25_q75'][1]}] |" if "paired_ratio_median" in r else " |")
                  for r in report["tree_summary"]]
    o = report.get("overload")
    if o:
        lines += ["", f"Overload: {o['clients']} clients against `--max-queue {o['max_queue']}`: statuses {o['status']}; "
                      f"accepted p50/p99 {o.get('ok_p50_ms')}/{o.get('ok_p99_ms')} ms, rejected p99 "
                      f"{o.get('rejected_p99_ms')} ms."]
    s = report.get("soak")
    if s:
        lines += ["", f"Soak: {s['seconds']} s at 64 clients, {s['texts_per_s']} texts/s; server RSS "
                      f"{s['rss_mb_first']} -> {s['rss_mb_last']} MB (max {s['rss_mb_max']})."]
    lines += ["", f"CPU flags: {', '.join(report['env']['cpu_flags'])}. Versions: {report['env']['versions']}."]
    return "\n".join(lines) + "\n"


def _call_texts(report: dict) -> str:
    sizes = sorted({r["offline_call_texts"] for r in report["levels"] if "offline_call_texts" in r})
    return "/".join(map(str, sizes)) or "?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", type=Path, help="export folder to serve (required)")
    p.add_argument("--name", default="local", help="results go to benchmarks/results/serve-<name>/")
    p.add_argument("--data", default="eval", help="eval (the export's eval.jsonl), bbc-news-headlines, or a file")
    p.add_argument("--levels", default="1,8,64,256", help="concurrent clients per level (comma list)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level")
    p.add_argument("--rounds", type=int, default=1,
                   help="measured runs per level, each followed by an offline measure (drift shows as spread)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each level")
    p.add_argument("--max-requests", type=int, default=200_000, help="stop a level after this many requests")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="bertfast serve --max-wait-ms")
    p.add_argument("--serve-args", default="", help="more `bertfast serve` flags, e.g. --serve-args=--no-allow-spinning")
    p.add_argument("--threads", type=int, default=None, help="server threads (default: usable CPUs)")
    p.add_argument("--servers", default="batching,plain", help="which servers to compare (batching, plain, infinity)")
    p.add_argument("--infinity-bin", default=None,
                   help="infinity_emb executable (pip install 'infinity-emb[server,torch]' in its own venv); "
                        "adds the `infinity` server")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="PyTorch checkpoint for Infinity (default: the export manifest's source.model_dir)")
    p.add_argument("--trees", default=None,
                   help="compare `bertfast serve` from source trees instead of --servers: label=DIR,label=DIR "
                        "(e.g. before=../wt-before,after=.); loaded in turn, ABBA per round")
    p.add_argument("--note", default="", help="a sentence recorded with the results (how the export was made, ...)")
    p.add_argument("--overload-clients", type=int, default=512)
    p.add_argument("--overload-queue", type=int, default=32, help="--max-queue of the overload phase (0: skip)")
    p.add_argument("--soak-seconds", type=float, default=0.0, help="memory soak duration (0: skip)")
    p.add_argument("--plain-server", default=None, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from bertfast.bench.paths import display_path
    from bertfast.utils import usable_cpus, write_json

    threads = args.threads or usable_cpus()
    if args.plain_server:
        plain_server(args.plain_server, args.port, threads)
        return 0
    if args.export is None:
        p.error("--export is required")
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1; got {args.rounds}.")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.levels = [int(x) for x in args.levels.split(",")]
    if args.infinity_bin and "infinity" not in args.servers.split(","):
        args.servers += ",infinity"
    if "infinity" in args.servers.split(",") and args.model_dir is None:
        import json

        args.model_dir = Path(json.loads((args.export / "bertfast.json").read_text())["source"]["model_dir"])
    from bertfast.training.data import load_texts, read_labeled

    data = args.export / "eval.jsonl" if args.data == "eval" else args.data
    texts = read_labeled(data, "text", "label").texts if args.data == "eval" else load_texts(data)[0]
    report = {"name": args.name, "export": display_path(args.export), "data": display_path(data) if args.data == "eval" else data,
              "texts": len(texts), "max_wait_ms": args.max_wait_ms, "serve_args": args.serve_args, "note": args.note, "env": environment(threads), "levels": []}
    if args.trees:
        args.trees = {label: Path(d).resolve() for label, d in (t.split("=", 1) for t in args.trees.split(","))}
        report["trees"] = [_tree_record(label, tree) for label, tree in args.trees.items()]
        report["levels"] = run_trees(args.export, texts, args, threads)
        report["tree_summary"] = tree_summary(report["levels"], list(args.trees))
    for kind in ([] if args.trees else args.servers.split(",")):
        report["levels"] += run_levels(kind, args.export, texts, args, threads)
    if args.overload_queue:
        report["overload"] = overload(args.export, texts, args, threads)
    if args.soak_seconds:
        report["soak"] = soak(args.export, texts, args, threads)
    report["offline"] = offline(args.export, texts, threads, n=max(2048, len(texts)))
    print(f"offline   {report['offline']['texts_per_s']} texts/s", flush=True)
    out = ROOT / "benchmarks" / "results" / f"serve-{args.name}"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", report)
    (out / "results.md").write_text(markdown(report))
    print(f"wrote {display_path(out / 'results.json')} and results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
