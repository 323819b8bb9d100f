"""`python -m anomed.cli ARGS`: the same as the `anomed` command."""

import sys

from anomed.cli import main

sys.exit(main())
