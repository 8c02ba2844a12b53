"""`python -m voicebridge.sim.convai_emulator`, the same as `voicebridge-convai-emulator`."""

from .cli import main

main()
