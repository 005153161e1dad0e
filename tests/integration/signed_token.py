"""signed_token: an independent Python implementation of Entropy's signed worker tokens,

    esig1:<worker_id>:<expires_at_unix_ms>:<nonce>:<hmac>

hmac being HMAC-SHA256, keyed with the worker token, over everything before the last colon, in
lower-case hex (common/signed-token.h). Tests make tokens with it, so that the daemon accepting them
cross-checks the C implementation against this one."""

import hashlib
import hmac
import secrets
import time


def make_token(key, worker_id, lifetime=60.0, expires_ms=None, nonce=None):
    if expires_ms is None:
        expires_ms = int((time.time() + lifetime) * 1000)
    payload = f"esig1:{worker_id}:{expires_ms}:{nonce or secrets.token_hex(16)}"
    mac = hmac.new(key.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}:{mac}"
