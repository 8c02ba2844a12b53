"""`python -m voicebridge.sim.twilio_caller`: the same as its console script."""

import sys

from .cli import main

sys.exit(main())
