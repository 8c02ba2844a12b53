"""Generated voicebridge.v1 contract stubs (see proto/generate.py); do not edit."""
