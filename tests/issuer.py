"""A token issuer for tests: signing keys, a JWK Set served by a real uvicorn server on
127.0.0.1 (that a test can stop, start again, and rotate keys on), and tokens minted with any
header and claims, honest or forged."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.types import Receive, Scope, Send

ISSUER = "https://issuer.test/"
AUDIENCE = "platform-metadata"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class SigningKey:
    """A private key, its `kid` and algorithm, and its public JWK."""

    def __init__(self, kid: str, alg: str = "RS256") -> None:
        self.kid = kid
        self.alg = alg
        self.private: PrivateKey
        if alg.startswith("ES"):
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwk.update(kid=kid, use="sig")

    def variant(self, **changes: str) -> SigningKey:
        """The same key pair under another `kid` or signing algorithm."""
        copy = SigningKey.__new__(SigningKey)
        copy.__dict__.update(self.__dict__, **changes)
        return copy

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def claims(sub: str = "john_doe", **overrides: Any) -> dict[str, Any]:
    """Good claims for `sub`, valid for an hour, with `overrides` (None removes a claim)."""
    now = int(time.time())
    given: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now, "exp": now + 3600,
    }  # fmt: skip
    given.update(overrides)
    return {name: value for name, value in given.items() if value is not None}


def token(key: SigningKey, sub: str = "john_doe", headers: dict[str, Any] | None = None,
          **overrides: Any) -> str:  # fmt: skip
    """A token signed by `key`, with its `kid` (unless `headers` says otherwise)."""
    return jwt.encode(
        claims(sub, **overrides), key.private, algorithm=key.alg,
        headers={"kid": key.kid, **(headers or {})},
    )  # fmt: skip


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand: any header, any payload, any signature."""
    parts = [json.dumps(header).encode(), json.dumps(payload).encode(), signature]
    return ".".join(jwt.utils.base64url_encode(p).decode() for p in parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class JWKSServer:
    """A JWK Set at `http://127.0.0.1:<port>/jwks.json`, served by uvicorn in a thread.

    `keys` is what it publishes now; `hits` counts the fetches it answered; `stop()` and
    `start()` take it off the network and back on the same port."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.hits = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/jwks.json"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.hits += 1
        body = json.dumps({"keys": [key.jwk for key in self.keys]}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def start(self) -> None:
        config = uvicorn.Config(
            self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
            loop="asyncio", http="h11",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the JWKS server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = self._thread = None

    @contextmanager
    def running(self) -> Iterator[JWKSServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


async def settle() -> None:
    """Let a fetch started in the background finish."""
    for _ in range(50):
        await asyncio.sleep(0.01)
