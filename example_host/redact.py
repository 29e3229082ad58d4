"""Database URLs as the example host shows them: without their password.

A `--database` or `$DATABASE_URL` often carries the database password
(`postgresql://app:secret@db/app`), and what the CLI prints ends up in terminals, CI logs and
bug reports.  Everything the host prints about a database goes through `redact_url` (a URL)
or `redact_message` (a message that may quote one).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MASK", "redact_message", "redact_url"]

#: What a password is replaced with (as scripts/with-postgres shows its cluster's URL).
MASK = "***"

# libpq's and asyncpg's query parameters that carry a secret: `password=` and the client
# key's `sslpassword=`.
_SECRET_PARAMETER = re.compile(r"(?i)(^|&)((?:ssl)?password=)([^&#]*)")


def redact_url(url: str) -> str:
    """`url` with the password of its user info, and any `password=` query parameter, masked:
    `postgresql://app:***@db:5432/app`.  The user, host, port, database and other parameters
    stay, so the operator can tell which database is meant."""
    return _redacted(url)[0]


def redact_message(message: str, url: str) -> str:
    """`message` (an error's text, say) with `url` and its passwords masked wherever they
    appear, as written or percent-decoded.

    Drivers do not quote the password in their errors today; this keeps it so if one does.
    A password under 4 characters is left alone in the free text: masking it would garble
    ordinary words of the message, and it is no secret worth the name.
    """
    redacted, secrets = _redacted(url)
    message = message.replace(url, redacted)
    for secret in secrets:
        for form in {secret, unquote(secret)}:
            if len(form) >= 4:
                message = message.replace(form, MASK)
    return message


def _redacted(url: str) -> tuple[str, list[str]]:
    """`url` with its passwords masked, and the passwords as written in it.

    The user info ends at the last `@` before the query: a password with an unescaped `@` or
    `/` (which URL parsers split differently) is then masked whole rather than in part.
    """
    secrets: list[str] = []
    prefix, separator, rest = url.partition("://")
    if not separator:  # `user:pass@host/db`: not a URL we accept, but it may be printed back
        prefix, rest = "", url
    before_query, question, query = rest.partition("?")
    user_info, at, host = before_query.rpartition("@")
    if at and ":" in user_info:
        user, _, password = user_info.partition(":")
        secrets.append(password)
        before_query = f"{user}:{MASK}@{host}"

    def mask(match: re.Match[str]) -> str:
        secrets.append(match[3])
        return f"{match[1]}{match[2]}{MASK}"

    query = _SECRET_PARAMETER.sub(mask, query)
    return prefix + separator + before_query + question + query, secrets
