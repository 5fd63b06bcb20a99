"""`python -m tinydancer` runs the command line."""

from tinydancer.cli import main

raise SystemExit(main())
