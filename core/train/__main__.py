"""`python -m core.train`: the command line lives in core/cli.py, which parses it before torch loads (a light
--help) and imports core.train by name once parsing is done. Being its own module, this keeps the import graph
free of a circle (core.train never imports core.cli)."""

from core.cli import main

raise SystemExit(main())
