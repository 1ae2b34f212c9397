"""HubSpot's webhook signatures: v3 (HMAC over method, URI, body and timestamp) and the older v1
(a hash of secret and body). Pure functions; the vectors of ../shared/PROVIDERS-hubspot.md pin
them to what HubSpot's own library computes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# HubSpot signs the URI with these escapes decoded, and only these: every other escape (%20,
# %2B, %26, %3D, %23 ...) stays as it came. The docs list them in upper case; whether a
# lower-case escape (%3a) is decoded too is UNCONFIRMED. We decode the upper-case ones only, as
# listed: HubSpot's own encoder writes upper-case hex, and our target URL holds no escapes.
DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPES = re.compile("|".join(re.escape(escape) for escape in DECODED))


def signed_uri(public_base_url: str, path: str, query: str) -> str:
    """The URI a v3 signature covers: the public address HubSpot called (scheme and host from
    `PUBLIC_BASE_URL`, since a proxy may stand between), the path, and the query as it came,
    with the documented escapes decoded in one pass (so `%253A` stays `%253A`)."""
    uri = public_base_url.rstrip("/") + path + (f"?{query}" if query else "")
    return _ESCAPES.sub(lambda match: DECODED[match.group(0)], uri)


def v3_message(method: str, uri: str, body: bytes, timestamp: str) -> bytes:
    return method.encode() + uri.encode() + body + timestamp.encode()


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """`X-HubSpot-Signature-v3`: base64 of HMAC-SHA256 keyed with the client secret over
    method + URI + body + timestamp (epoch milliseconds, as sent)."""
    message = v3_message(method, uri, body, timestamp)
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def v1_signature(secret: str, body: bytes) -> str:
    """`X-HubSpot-Signature` version v1: hex SHA-256 of the client secret followed by the body."""
    return hashlib.sha256(secret.encode() + body).hexdigest()
