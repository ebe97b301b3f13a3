"""``python -m hypergrad.experiments``: the command line of Part II's experiments."""

from hypergrad.experiments import main

raise SystemExit(main())
