"""Everything Twilio speaks, as pure protocol code: Media Streams, TwiML, signatures, REST, callbacks."""
