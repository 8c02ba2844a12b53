"""voicebridge media service: the call's audio between the phone (mu-law 8 kHz) and the agent."""
