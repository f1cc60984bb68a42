"""`python -m bertfast ...` is the `bertfast` command."""

import sys

from .cli import main

sys.exit(main())
