"""``python -m mlzsl`` runs the command line."""

import sys

from mlzsl.cli import main

sys.exit(main())
