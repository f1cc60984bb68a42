"""`python -m bertfast.serve EXPORT [flags]`: the same as `bertfast serve` (used by tests and images)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import add_arguments, main


def _cli(argv: list[str] | None = None) -> int:
    from ..errors import BertfastError

    parser = argparse.ArgumentParser(prog="python -m bertfast.serve", description=(__doc__ or "").strip(),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("bertfast").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return main(args)
    except BertfastError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_cli())
