"""`python -m implicit_em.cli ...`, the same as `implicit-em ...`."""

import sys

from implicit_em.cli import main

sys.exit(main())
