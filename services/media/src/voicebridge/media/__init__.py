"""voicebridge media service: the call's audio between the phone (mu-law 8 kHz) and the agent."""

import os

# Per-frame matrix products are tiny; waking OpenBLAS worker threads for them doubles the CPU cost
# (measured: 12 µs wall, 22 µs CPU per frame). Must be set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
