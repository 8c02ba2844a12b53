"""voicebridge agent service: holds each call's conversation with an agent backend."""
