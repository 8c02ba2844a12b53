"""Request authentication for everything Twilio sends the edge: ``X-Twilio-Signature`` and a per-call token.

Signatures use twilio-python's :class:`~twilio.request_validator.RequestValidator` (HMAC-SHA1 of URL + sorted
form fields, keyed with the Auth Token; https://www.twilio.com/docs/usage/webhooks/webhooks-security).
The URL is always rebuilt from the configured public base URL, never from the request: behind a proxy or a
tunnel the request's scheme/host differ from what Twilio signed. Every check fails closed: the validator
raises ``TypeError`` on some inputs (twilio/twilio-python#885), which here means "invalid".

The stream token is defence in depth for the Media Streams socket (an unauthenticated socket is toll
fraud): minted in the signed TwiML response, carried as a ``<Parameter>``, checked in ``start``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

__all__ = [
    "SIGNATURE_HEADER",
    "StreamTokens",
    "TwilioSignatureValidator",
    "public_url",
    "websocket_url",
]

SIGNATURE_HEADER = "X-Twilio-Signature"


class _MultiItems(Protocol):
    def multi_items(self) -> list[tuple[str, Any]]: ...


def public_url(base_url: str, path: str, query: str = "") -> str:
    """The URL Twilio requested: configured public base (scheme, host, optional prefix) + request path/query.

    ``query`` must be the raw query string as received (Twilio signs it as sent: encoded, in order).
    """
    base = urlsplit(base_url)
    if base.scheme not in ("https", "http", "wss", "ws") or not base.netloc:
        raise ValueError(f"public base URL must be absolute http(s)/ws(s), got {base_url!r}")
    full_path = base.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((base.scheme, base.netloc, full_path, query, ""))


def websocket_url(base_url: str, path: str) -> str:
    """The ``wss://`` URL Twilio dials and signs for a stream (https→wss, http→ws), never with a query."""
    url = urlsplit(public_url(base_url, path))
    scheme = {"https": "wss", "http": "ws"}.get(url.scheme, url.scheme)
    return urlunsplit((scheme, url.netloc, url.path, "", ""))


class _Params(dict[str, list[str]]):
    """Form fields as name → all values; RequestValidator reads repeated fields through ``getlist``."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def _form_params(form: Mapping[str, Any] | _MultiItems | Iterable[tuple[str, Any]]) -> _Params:
    if hasattr(form, "multi_items"):  # Starlette FormData / QueryParams
        items: Iterable[tuple[str, Any]] = form.multi_items()
    elif hasattr(form, "getlist") and hasattr(form, "keys"):
        items = [(k, v) for k in form.keys() for v in form.getlist(k)]  # noqa: SIM118 (MultiDict keys)
    elif isinstance(form, Mapping):
        items = form.items()
    else:
        items = form
    params = _Params()
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("form fields must be strings (an uploaded file is not a Twilio webhook)")
        params.setdefault(name, []).append(value)
    return params


class TwilioSignatureValidator:
    """Checks ``X-Twilio-Signature`` on webhooks, JSON callbacks and the Media Streams upgrade."""

    def __init__(self, auth_token: str) -> None:
        if not auth_token:
            raise ValueError("an Auth Token is required to validate Twilio signatures")
        self._validator = RequestValidator(auth_token)

    def validate_form(
        self,
        url: str,
        form: Mapping[str, Any] | _MultiItems | Iterable[tuple[str, Any]],
        signature: str | None,
    ) -> bool:
        """A form-encoded POST (voice webhook, status callback): every received field must be passed."""
        if not signature:
            return False
        try:
            return bool(self._validator.validate(url, _form_params(form), signature))
        except (TypeError, ValueError, AttributeError, UnicodeError):
            return False

    def validate_json(self, url: str, raw_body: bytes | str, signature: str | None) -> bool:
        """A JSON POST: Twilio signs the URL carrying ``?bodySHA256=<hex sha256 of the raw body>``.

        The raw body is compared with that hash; a URL without ``bodySHA256`` is rejected (passing ``{}``
        instead would accept any forged body under a replayed signature).
        """
        if not signature or "bodySHA256" not in urlsplit(url).query:
            return False
        try:
            body = raw_body.decode("utf-8") if isinstance(raw_body, bytes) else raw_body
            return bool(self._validator.validate(url, body, signature))
        except (TypeError, ValueError, AttributeError, UnicodeError):
            return False

    def validate_websocket(self, ws_url: str, signature: str | None) -> bool:
        """The Media Streams upgrade: a GET for the ``wss://`` URL written in the TwiML, with no params."""
        if not signature:
            return False
        try:
            return bool(self._validator.validate(ws_url, {}, signature))
        except (TypeError, ValueError, AttributeError, UnicodeError):
            return False


class StreamTokens:
    """Single-use, short-lived tokens binding a Media Stream to the call whose signed webhook minted it.

    A token is ``<call-bound nonce>.<expiry>.<HMAC-SHA256>``: stateless to verify (any edge instance
    sharing ``secret`` can check it), while single use is enforced per process by remembering spent
    nonces until they expire. With several edge instances, single use holds per instance only.
    """

    def __init__(self, secret: bytes, ttl_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("stream token secret must be at least 16 bytes")
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock
        self._spent: dict[str, float] = {}

    def mint(self, call_sid: str) -> str:
        nonce = secrets.token_urlsafe(12)
        expires = int(self._clock() + self._ttl_s)
        return f"{nonce}.{expires}.{self._mac(call_sid, nonce, expires)}"

    def check(self, token: str | None, call_sid: str) -> str | None:
        """None when the token is valid for this call (and spends it); else why not, for logs."""
        if not token or not isinstance(token, str):
            return "missing"
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit() or len(parts[1]) > 12:
            return "malformed"
        nonce, expires_s, mac = parts
        expires = int(expires_s)
        if not hmac.compare_digest(mac.encode(), self._mac(call_sid, nonce, expires).encode()):
            return "bad signature or wrong call"
        now = self._clock()
        self._spent = {n: t for n, t in self._spent.items() if t >= now}
        if now > expires:
            return "expired"
        if nonce in self._spent:
            return "already used"
        self._spent[nonce] = expires
        return None

    def verify(self, token: str | None, call_sid: str) -> bool:
        return self.check(token, call_sid) is None

    def _mac(self, call_sid: str, nonce: str, expires: int) -> str:
        msg = f"voicebridge-stream-token\x00{call_sid}\x00{nonce}\x00{expires}".encode()
        digest = hmac.new(self._secret, msg, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
