"""``python -m core`` is ``veilleuse-core``."""

from core.cli import main

raise SystemExit(main())
