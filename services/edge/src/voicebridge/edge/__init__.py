"""voicebridge edge service: the only part that talks to Twilio (webhooks, TwiML, REST, Media Streams)."""
