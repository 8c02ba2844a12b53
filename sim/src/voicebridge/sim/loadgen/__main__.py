"""`python -m voicebridge.sim.loadgen`: the same as its console script."""

import sys

from .cli import main

sys.exit(main())
