"""`bertfast` command line: a table from command name to the module that implements it.

Each module exposes `add_arguments(parser)` (its flags, documented in --help) and
`main(args) -> int`, which builds the module's config dataclass from the flags and calls the
module's one public verb; the same verb is the Python API. Modules keep heavy imports (torch,
transformers, onnx) inside functions, so `bertfast --help` and `bertfast predict` stay light.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("bertfast.training", "fine-tune a BERT-family classifier with HF Trainer"),
    "export": ("bertfast.exporter", "export to ONNX, fuse, quantize, validate every variant on real data"),
    "predict": ("bertfast.runtime.predict", "classify a file (CSV/TSV/JSONL/Parquet/TXT) with an export"),
    "serve": ("bertfast.serve", "HTTP server with dynamic batching across requests; TEI-compatible routes"),
    "bench": ("bertfast.bench", "benchmark bertfast vs PyTorch and Optimum side by side"),
    "doctor": ("bertfast.runtime.doctor", "show providers, CUDA/cuDNN, CPU features, threads, versions"),
    "quickstart": ("bertfast.quickstart", "train -> export -> predict -> bench on MiniLM-L6 + BBC News"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only `command`'s module is imported (None: every command's)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="bertfast",
        description="Fine-tune a BERT classifier, export a proven ONNX variant, and serve it fast.",
    )
    parser.add_argument("--version", action="version", version=f"bertfast {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=help_)  # listed in `bertfast --help`; flags not needed now
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name, help=help_, description=(mod.__doc__ or help_).strip().split("\n\n")[0],
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        # SUPPRESS: `bertfast -v CMD` and `bertfast CMD -v` both work (a False default here
        # would overwrite the top-level flag).
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug logging and full tracebacks")
        mod.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import BertfastError

    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the module of the command being run: `bertfast predict` must stay light.
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    # Our progress lines at INFO; other libraries (ORT's quantizer logs every tensor at INFO
    # on the root logger) only at WARNING unless --verbose.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(message)s" if not args.verbose else "%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("bertfast").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # SIGTERM (timeout, a Kubernetes stop, torchrun teardown) unwinds like Ctrl-C, so every
    # temp folder/file a run started is removed by the `atomic_*` context managers on the way out.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except BertfastError as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied, ... on a path the user gave
        if args.verbose:
            raise
        print(f"error: {e.strerror or e}{f': {e.filename}' if getattr(e, 'filename', None) else ''} "
              "(nothing was written under the final output name).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written under the final output name.", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated: nothing was written under the final output name.", file=sys.stderr)
        return 143


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM (a BaseException, so `except Exception` cannot eat it)."""


def _terminated(signum, frame):
    raise Terminated()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
