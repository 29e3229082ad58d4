"""The example host's JWT auth: `serve --jwks-url URL --jwt-issuer ISS --jwt-audience AUD
[--jwt-algorithms RS256,ES256]`.

A Bearer JWT's `sub` is a username of the host; memberships and admin rights come from the
host's own tables, as for tokens, and `Token` keys keep working.  A request without
credentials, or with a `Token` key, is answered exactly as without JWT (`WWW-Authenticate:
Token`); a bad Bearer token gets RFC 6750's `Bearer error="invalid_token"` challenge.
`serve` hands the settings to its workers in `EXAMPLE_HOST_JWT_*` variables.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from starlette_platform_metadata import Identity, PlatformAccess
from starlette_platform_metadata.arrivals import arrival
from starlette_platform_metadata.auth import TOKEN_SECURITY_SCHEMES
from starlette_platform_metadata.errors import USER_INACTIVE

from .auth import TokenAuthBackend
from .db import HostDB

if TYPE_CHECKING:
    from starlette_platform_metadata.jwt_auth import JWTAuthBackend

__all__ = ["JWT_ENV", "HostAuthBackend", "JWTSettings", "add_serve_flags", "export_env"]

#: `EXAMPLE_HOST_JWT_JWKS_URL`, `..._ISSUER`, `..._AUDIENCE`, `..._ALGORITHMS` (and
#: `..._VERIFIED_CACHE`, which has no flag).
JWT_ENV = "EXAMPLE_HOST_JWT_"
DEFAULT_ALGORITHMS = ("RS256",)


@dataclass(frozen=True)
class JWTSettings:
    """Where the issuer's keys are and what its tokens must say."""

    jwks_url: str
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    #: Verified tokens kept (`JWTAuthBackend.verify`); `$EXAMPLE_HOST_JWT_VERIFIED_CACHE`,
    #: with no flag: 0 is for measuring verification itself (benchmarks/run.py --jwt-compare).
    verified_cache: int = 4096

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> JWTSettings | None:
        """The settings `serve` exported, or `None` when JWT auth is off."""
        url = env.get(JWT_ENV + "JWKS_URL")
        if not url:
            return None
        algorithms = env.get(JWT_ENV + "ALGORITHMS") or ",".join(DEFAULT_ALGORITHMS)
        return cls(
            url,
            env[JWT_ENV + "ISSUER"],
            env[JWT_ENV + "AUDIENCE"],
            tuple(a.strip() for a in algorithms.split(",") if a.strip()),
            int(env.get(JWT_ENV + "VERIFIED_CACHE") or cls.verified_cache),
        )


def add_serve_flags(serve: argparse.ArgumentParser) -> None:
    """`serve`'s JWT flags (../shared/API.md)."""
    group = serve.add_argument_group("JWT auth (Authorization: Bearer, besides Token keys)")
    group.add_argument("--jwks-url", metavar="URL", help="the issuer's JWK Set URL")
    group.add_argument("--jwt-issuer", metavar="ISS", help="the `iss` tokens must carry")
    group.add_argument("--jwt-audience", metavar="AUD", help="the `aud` tokens must carry")
    group.add_argument(
        "--jwt-algorithms",
        metavar="ALGS",
        help=f"comma-separated allow-list (default: {','.join(DEFAULT_ALGORITHMS)})",
    )


def export_env(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check the JWT flags and put them where every worker reads them (`JWTSettings.from_env`)."""
    given = [args.jwks_url, args.jwt_issuer, args.jwt_audience, args.jwt_algorithms]
    if not any(given):
        return
    if not (args.jwks_url and args.jwt_issuer and args.jwt_audience):
        parser.error("--jwks-url, --jwt-issuer and --jwt-audience go together")
    algorithms = args.jwt_algorithms.split(",") if args.jwt_algorithms else DEFAULT_ALGORITHMS
    settings = JWTSettings(args.jwks_url, args.jwt_issuer, args.jwt_audience, tuple(algorithms))
    try:
        backend(settings)  # refuses `none`, HS*, unknown names: before serving, not per request
    except ValueError as exc:
        parser.error(f"--jwt-algorithms: {exc}")
    except ImportError:
        parser.error("JWT auth needs the jwt extra: pip install 'starlette-platform-metadata[jwt]'")
    os.environ[JWT_ENV + "JWKS_URL"] = settings.jwks_url
    os.environ[JWT_ENV + "ISSUER"] = settings.issuer
    os.environ[JWT_ENV + "AUDIENCE"] = settings.audience
    os.environ[JWT_ENV + "ALGORITHMS"] = ",".join(settings.algorithms)


def backend(settings: JWTSettings) -> JWTAuthBackend:
    """The package's `JWTAuthBackend` for `settings`, only to verify tokens: `HostAuthBackend`
    answers `access` from the host's tables.  Imported here, not at the top: PyJWT and
    cryptography load only in a host that turns JWT auth on."""
    from starlette_platform_metadata.jwt_auth import JWTAuthBackend

    async def host_answers(
        identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        raise AssertionError("HostAuthBackend answers access from the host's tables")

    return JWTAuthBackend(
        host_answers,
        jwks_url=settings.jwks_url,
        algorithms=settings.algorithms,
        issuer=settings.issuer,
        audience=settings.audience,
        verified_cache=settings.verified_cache,
    )


class HostAuthBackend:
    """`Token` keys (`TokenAuthBackend`) and Bearer JWTs naming a host user by `sub`.

    Both end in the same identity, `(user id, generation)`, so `access` and the batch
    question are the token backend's: one snapshot of the host tables per request.
    """

    #: No credentials: the contract's answer, byte for byte (API.md: `WWW-Authenticate: Token`).
    www_authenticate = "Token"
    openapi_security_schemes: Mapping[str, Mapping[str, Any]] = {
        **TOKEN_SECURITY_SCHEMES,
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    }

    def __init__(self, tokens: TokenAuthBackend, settings: JWTSettings) -> None:
        self.tokens = tokens
        self.db: HostDB = tokens.db
        self.jwt = backend(settings)

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        identity = await self.tokens.authenticate(conn)
        if identity is not None:
            return identity
        verified = await self.jwt.authenticate(conn)
        if verified is None:
            return None
        generation = await self.db.generation(arrival(conn.scope))
        user = await self.db.user_named(verified.username, generation=generation)
        if user is None:
            from starlette_platform_metadata.jwt_auth import invalid_token

            # Deleted (or never created) on the host: the issuer's word is not enough.
            raise invalid_token(USER_INACTIVE)
        return Identity(user.username, id=(user.id, generation))

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        return await self.tokens.access(identity, platform_key, target)

    async def members_among(
        self, identity: Identity, platform_key: str, usernames: Sequence[str]
    ) -> set[str]:
        return await self.tokens.members_among(identity, platform_key, usernames)

    async def aclose(self) -> None:
        await self.jwt.aclose()
