"""`python -m carteiro` is the `carteiro` command."""

import sys

from carteiro.cli import main

sys.exit(main())
