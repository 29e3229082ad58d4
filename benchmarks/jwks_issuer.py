"""An OIDC-style issuer for `run.py --jwt-compare`: an RS256 key, its JWK Set served on
127.0.0.1 from a thread of the benchmark process, and access tokens for the example host's
users.  The host fetches the set once and keeps it, so the load measures verification with
a cached key, not the issuer.

Not part of the package or the test suite.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://issuer.bench/"
AUDIENCE = "platform-metadata"
KID = "bench-1"
ALGORITHM = "RS256"
LIFETIME = 6 * 3600  # longer than any run


class Issuer:
    """Start with `start()`; `env()` is what `serve --jwks-url ...` would export to workers."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=KID, use="sig", alg=ALGORITHM)
        body = json.dumps({"keys": [jwk]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name for it
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        return {
            "EXAMPLE_HOST_JWT_JWKS_URL": self.url,
            "EXAMPLE_HOST_JWT_ISSUER": ISSUER,
            "EXAMPLE_HOST_JWT_AUDIENCE": AUDIENCE,
            "EXAMPLE_HOST_JWT_ALGORITHMS": ALGORITHM,
        }

    def bearer(self, username: str) -> str:
        """`Bearer <JWT>` for `username`: the whole Authorization value."""
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": username, "iat": now, "nbf": now,
                  "exp": now + LIFETIME}  # fmt: skip
        token = jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": KID})
        return f"Bearer {token}"
