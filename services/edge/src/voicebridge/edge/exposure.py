"""Development or production: an edge without Twilio signature checks must never be publicly reachable.

The rule (docs/edge.md, "Development and production"): signature checks default to on when
TWILIO_AUTH_TOKEN is set and off without it (local development). Off is allowed only when every
address the edge can be reached at is loopback: PUBLIC_BASE_URL's host, and the address it is
exposed on, which is EDGE_PUBLISHED_ON when a container runtime publishes it (docker-compose.yml sets
it from EDGE_PUBLISH, since inside a container the edge binds 0.0.0.0 in a private network namespace)
and EDGE_HOST otherwise. Anything else refuses to start with the one line that says what to set.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from voicebridge.runtime.config import ConfigError, Env
from voicebridge.runtime.grpc_tls import host_of, is_loopback_host


@dataclass(frozen=True)
class Exposure:
    validate_signatures: bool
    exposed_on: str  # the address the edge is reachable at (published address in a container)


def decide(env: Env, token: str | None, host: str, port: int, public_base_url: str) -> Exposure:
    validate = env.boolean("TWILIO_VALIDATE_SIGNATURES", token is not None)
    if validate and not token:
        raise ConfigError(
            "TWILIO_VALIDATE_SIGNATURES is on but TWILIO_AUTH_TOKEN is not set; set the token (production), "
            "or unset TWILIO_VALIDATE_SIGNATURES for local development on 127.0.0.1"
        )
    exposed_on = env.optional("EDGE_PUBLISHED_ON") or f"{host}:{port}"
    if not validate:
        public_host = urlsplit(public_base_url).hostname or ""
        if not is_loopback_host(public_host) or not is_loopback_host(host_of(exposed_on)):
            raise ConfigError(
                f"Twilio signature checks are off but the edge would be reachable beyond this machine "
                f"(PUBLIC_BASE_URL={public_base_url}, listening on {exposed_on}): set TWILIO_AUTH_TOKEN "
                f"for production, or keep PUBLIC_BASE_URL, EDGE_HOST and EDGE_PUBLISH on 127.0.0.1 "
                f"for local development"
            )
    return Exposure(validate_signatures=validate, exposed_on=exposed_on)
