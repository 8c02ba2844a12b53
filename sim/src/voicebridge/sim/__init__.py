"""Faithful local stand-ins for the parties outside voicebridge: Twilio and ElevenLabs."""
