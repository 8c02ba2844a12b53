"""Process plumbing shared by the voicebridge services.

Only what every service process needs in the same way lives here: reading configuration, logging
(with secret redaction), the gRPC server lifecycle (health, reflection, graceful SIGTERM), gRPC and
event-loop metrics. Call handling never lives here: the services share the contract, not internals.
"""
