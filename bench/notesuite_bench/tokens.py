"""User access tokens signed by the harness itself, with the private key `notesuite keygen`
wrote (services.Notesuite): the notes service verifies them with the public key, as it does the
gateway's, so a scenario can call notes directly without users or a gateway.

The token is the gateway's (crates/token): a JWT with header {"typ":"JWT","alg":"EdDSA"}, claims
iss/aud/sub/iat/exp, signed with Ed25519 by `openssl pkeyutl -rawin` (keygen's key is PKCS#8,
which openssl reads; Python's standard library has no Ed25519).
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

ISSUER = "notesuite-gateway"
USER_AUDIENCE = "notesuite"
HEADER = {"typ": "JWT", "alg": "EdDSA"}
DEFAULT_TTL_S = 24 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_input(user_id: str, now_s: int, ttl_s: int) -> str:
    """`header.claims` of a user token, base64url without padding: what the signature covers."""
    claims = {"iss": ISSUER, "aud": USER_AUDIENCE, "sub": user_id, "iat": now_s, "exp": now_s + ttl_s}
    return ".".join(b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (HEADER, claims))


def user_token(private_key: Path, user_id: str | None = None, ttl_s: int = DEFAULT_TTL_S) -> str:
    """A token acting for `user_id` (a fresh UUID by default: a new owner with no notes)."""
    unsigned = signing_input(user_id or str(uuid.uuid4()), int(time.time()), ttl_s)
    # openssl signs Ed25519 in one shot only, from a file whose size it can read.
    with tempfile.NamedTemporaryFile(prefix="notesuite-bench-token-") as message:
        message.write(unsigned.encode())
        message.flush()
        signature = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-inkey", str(private_key), "-rawin", "-in", message.name],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    if len(signature) != 64:
        raise RuntimeError(f"openssl gave a {len(signature)}-byte signature, not Ed25519's 64")
    return f"{unsigned}.{b64url(signature)}"
