"""`python -m bertnas.cli ...` is `bertnas ...`."""

import sys

from bertnas.cli import main

sys.exit(main())
