"""`python -m runner` is the same as the `runner` command."""

from runner.entry import main

raise SystemExit(main())
