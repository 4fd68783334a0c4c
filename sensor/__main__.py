"""``python -m sensor`` runs the ``veilleuse`` command."""

import sys

from sensor.cli import main

sys.exit(main())
