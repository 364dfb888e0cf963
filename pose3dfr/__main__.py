"""`python -m pose3dfr` runs the command line."""

import sys

from pose3dfr.cli import main

sys.exit(main())
