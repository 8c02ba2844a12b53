"""The per-call secret that lets a call outlive the replica carrying it.

The agent service holds a call's conversation for a while when the stream feeding it breaks, and
hands it only to a stream presenting this secret (it keeps just a hash). Every edge of a deployment
derives the same secret from the key the edges already share (the stream-token key), so the edge that
picks the call up after another edge died can reclaim it, while media, the agent service and anyone
on the network cannot mint one for a call they merely know the sid of."""

from __future__ import annotations

import hashlib
import hmac

CALL_SECRET_LABEL = b"voicebridge call secret v1\x00"


def call_secret(key: str, call_sid: str) -> bytes:
    """HMAC-SHA256 of the call sid under the edges' shared key: 32 bytes, the same on every edge."""
    return hmac.new(key.encode(), CALL_SECRET_LABEL + call_sid.encode(), hashlib.sha256).digest()
