"""`python -m aispend` runs the CLI."""

import sys

from aispend.cli import main

sys.exit(main())
