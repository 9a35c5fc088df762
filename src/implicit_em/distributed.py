"""Moved to `implicit_em.train.distributed` (issue 14); this path is an alias kept for old
imports, and `torchrun -m implicit_em.distributed ...` still runs the `ddp` command."""

import sys

if __name__ == "__main__":
    from implicit_em.cli import main

    sys.exit(main(["ddp", *sys.argv[1:]]))
else:
    from implicit_em._moved import alias

    alias(__name__, "implicit_em.train.distributed")
