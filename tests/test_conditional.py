"""ETags and conditional requests (RFC 9110 section 13), over every store.

The ETag is the record's version in quotes: `"0"` while nothing was ever stored, one more with
every change (a DELETE of a stored record included).  `If-None-Match` makes GET/HEAD answer 304;
`If-Match` makes PATCH/PUT/DELETE answer 412 and change nothing unless it holds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from .conftest import URL

pytestmark = pytest.mark.anyio

Users = dict[str, dict[str, str]]
ACME = URL + "?platform_key=acme-corp"
PRECONDITION_FAILED = {"detail": "Precondition failed: the metadata changed since the given ETag."}
ALREADY_STORED = {"detail": "Precondition failed: metadata is already stored."}
STILL_THAT_ETAG = {"detail": "Precondition failed: the metadata still has one of the given ETags."}


def with_header(headers: dict[str, str], name: str, value: str) -> dict[str, str]:
    return {**headers, name: value}


async def snapshot(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[Any, str]:
    """The whole GET body and its ETag."""
    response = await client.get(ACME, headers=headers)
    assert response.status_code == 200
    return response.json(), response.headers["etag"]


async def write(
    client: httpx.AsyncClient, method: str, headers: dict[str, str], **extra: str
) -> httpx.Response:
    body = {"PATCH": {"metadata": {"n": 1}}, "PUT": {"metadata": {"p": 2}}}.get(method)
    return await client.request(method, ACME, json=body, headers={**headers, **extra})


# --- ETag --------------------------------------------------------------------------------------


async def test_etag_is_stable_while_unchanged_and_changes_with_every_write(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """GET repeats its ETag until a write; each write answers the ETag GET then shows."""
    john = acme["john"]
    seen: list[str] = []
    for step in ["GET", "PATCH", "PATCH", "PUT", "DELETE", "PUT", "DELETE", "DELETE"]:
        if step != "GET":
            response = await write(client, step, john)
            assert response.status_code in (200, 204)
        first = await client.get(ACME, headers=john)
        second = await client.get(ACME, headers=john)
        assert first.headers["etag"] == second.headers["etag"]
        if step in ("PATCH", "PUT"):
            assert response.headers["etag"] == first.headers["etag"]
        seen.append(first.headers["etag"])
    # Nothing stored is "0"; a DELETE of nothing changes nothing, so the last two agree.
    assert seen == ['"0"', '"1"', '"2"', '"3"', '"4"', '"5"', '"6"', '"6"']


async def test_etags_are_per_user_and_platform(client: httpx.AsyncClient, acme: Users) -> None:
    """A write to one user's record leaves another user's ETag alone."""
    await write(client, "PUT", acme["john"])
    assert (await client.get(ACME, headers=acme["jane"])).headers["etag"] == '"0"'


# --- If-None-Match -----------------------------------------------------------------------------


async def test_if_none_match_with_the_current_etag_is_304_without_body(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """304 carries the ETag (and Vary, as the 200 would) and no body; GET and HEAD alike."""
    john = acme["john"]
    etag = (await write(client, "PUT", john)).headers["etag"]
    for method in ("GET", "HEAD"):
        headers = with_header(john, "If-None-Match", etag)
        response = await client.request(method, ACME, headers=headers)
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["vary"] == "Authorization"


@pytest.mark.parametrize(
    "header",
    ["*", 'W/"{v}"', '"{v}"', '"999", "{v}"', 'W/"7",W/"{v}"', '  "{v}" , "8" '],
)
async def test_if_none_match_forms_that_match(
    client: httpx.AsyncClient, acme: Users, header: str
) -> None:
    """`*`, weak tags (weak comparison) and lists match the current ETag: 304."""
    john = acme["john"]
    version = (await write(client, "PUT", john)).headers["etag"].strip('"')
    headers = with_header(john, "If-None-Match", header.format(v=version))
    response = await client.get(ACME, headers=headers)
    assert response.status_code == 304
    assert response.headers["etag"] == f'"{version}"'


@pytest.mark.parametrize("header", ['"0"', '"2"', 'W/"2"', '"2", "3"', "garbage", '"1'])
async def test_if_none_match_that_does_not_match_is_a_full_200(
    client: httpx.AsyncClient, acme: Users, header: str
) -> None:
    """A stale, foreign or malformed tag gets the full body."""
    john = acme["john"]
    stored = await write(client, "PUT", john)
    assert stored.headers["etag"] == '"1"'
    response = await client.get(ACME, headers=with_header(john, "If-None-Match", header))
    assert response.status_code == 200
    assert response.json()["metadata"] == {"p": 2}


async def test_if_none_match_star_needs_a_stored_record(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """`*` matches only a stored record: not before the first write, not after a DELETE."""
    john = acme["john"]
    star = with_header(john, "If-None-Match", "*")
    assert (await client.get(ACME, headers=star)).status_code == 200
    await write(client, "PUT", john)
    assert (await client.get(ACME, headers=star)).status_code == 304
    await write(client, "DELETE", john)
    response = await client.get(ACME, headers=star)
    assert response.status_code == 200
    assert response.json()["metadata"] == {}


async def test_if_none_match_on_nothing_stored_matches_its_etag(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """Even "nothing stored" has an ETag, and a client may revalidate it."""
    response = await client.get(ACME, headers=with_header(acme["john"], "If-None-Match", '"0"'))
    assert (response.status_code, response.headers["etag"]) == (304, '"0"')


# --- If-Match ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize(
    "header",
    [
        '"999"',  # another version
        '"0"',  # "nothing ever stored", but something is
        'W/"{v}"',  # weak tags never match If-Match (strong comparison)
        '"999", "998"',
        # malformed: never a match, so never a write
        "{v}",
        '"{v}',
        '"{v}" garbage',
        "",
        "W/",
        '"{v}";',
        '*, "{v}"',
    ],
)
async def test_if_match_that_fails_is_412_and_changes_nothing(
    client: httpx.AsyncClient, acme: Users, method: str, header: str
) -> None:
    """A stale, weak or malformed If-Match: 412 with a JSON body, the record untouched."""
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    version = before[1].strip('"')
    response = await write(client, method, john, **{"If-Match": header.format(v=version)})
    assert response.status_code == 412, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == PRECONDITION_FAILED
    assert response.headers["etag"] == before[1]  # the current ETag, to retry with
    assert await snapshot(client, john) == before


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize("header", ['"{v}"', ' "{v}" ', '"998", "{v}"', 'W/"1", "{v}"', "*"])
async def test_if_match_that_holds_lets_the_write_through(
    client: httpx.AsyncClient, acme: Users, method: str, header: str
) -> None:
    """The current ETag, alone or in a list, or `*` on a stored record: the write happens."""
    john = acme["john"]
    version = int((await write(client, "PUT", john)).headers["etag"].strip('"'))
    response = await write(client, method, john, **{"If-Match": header.format(v=version)})
    assert response.status_code == (204 if method == "DELETE" else 200), response.text
    assert (await snapshot(client, john))[1] == f'"{version + 1}"'


async def test_lost_update_is_refused(client: httpx.AsyncClient, acme: Users) -> None:
    """Two clients read the same ETag; the second to write gets 412, not a silent overwrite."""
    john = acme["john"]
    etag = (await write(client, "PUT", john)).headers["etag"]
    first = await client.put(
        ACME, json={"metadata": {"by": "first"}}, headers=with_header(john, "If-Match", etag)
    )
    second = await client.put(
        ACME, json={"metadata": {"by": "second"}}, headers=with_header(john, "If-Match", etag)
    )
    assert (first.status_code, second.status_code) == (200, 412)
    assert (await snapshot(client, john))[0]["metadata"] == {"by": "first"}


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
async def test_if_match_star_needs_a_stored_record(
    client: httpx.AsyncClient, acme: Users, method: str
) -> None:
    """`If-Match: *` is 412 before the first write and again after a DELETE."""
    john = acme["john"]
    star = {"If-Match": "*"}
    assert (await write(client, method, john, **star)).status_code == 412
    assert (await snapshot(client, john))[1] == '"0"'
    await write(client, "PUT", john)
    await write(client, "DELETE", john)
    before = await snapshot(client, john)
    assert (await write(client, method, john, **star)).status_code == 412
    assert await snapshot(client, john) == before


async def test_if_match_zero_is_create_only(client: httpx.AsyncClient, acme: Users) -> None:
    """`If-Match: "0"` writes only while nothing was ever stored: the first creator wins."""
    john = acme["john"]
    zero = {"If-Match": '"0"'}
    assert (await write(client, "DELETE", john, **zero)).status_code == 204  # nothing, still "0"
    created = await client.put(ACME, json={"metadata": {"by": "first"}}, headers={**john, **zero})
    assert (created.status_code, created.headers["etag"]) == (200, '"1"')
    again = await client.put(ACME, json={"metadata": {"by": "second"}}, headers={**john, **zero})
    assert again.status_code == 412
    for method in ("PATCH", "DELETE"):
        assert (await write(client, method, john, **zero)).status_code == 412
    assert (await snapshot(client, john))[0]["metadata"] == {"by": "first"}


async def test_after_delete_the_tombstone_etag_is_the_precondition(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """After a DELETE, GET's ETag (not "0", which names "never stored") guards re-creation."""
    john = acme["john"]
    await write(client, "PUT", john)
    await write(client, "DELETE", john)
    metadata, etag = await snapshot(client, john)
    assert (metadata, etag) == (
        {"username": "john_doe", "platform_key": "acme-corp", "metadata": {},
         "created_at": None, "updated_at": None},
        '"2"',
    )  # fmt: skip
    assert (await write(client, "PUT", john, **{"If-Match": '"0"'})).status_code == 412
    recreated = await write(client, "PUT", john, **{"If-Match": etag})
    assert (recreated.status_code, recreated.headers["etag"]) == (200, '"3"')
    assert recreated.json()["created_at"] is not None


async def test_if_none_match_star_on_a_write_is_create_only_even_after_a_delete(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """`If-None-Match: *` on PUT/PATCH writes only while no record is stored: the first
    creator wins, and after a DELETE the record can be created again the same way."""
    john, none = acme["john"], {"If-None-Match": "*"}
    created = await client.put(ACME, json={"metadata": {"by": "first"}}, headers={**john, **none})
    assert (created.status_code, created.headers["etag"]) == (200, '"1"')
    for method in ("PUT", "PATCH", "DELETE"):
        refused = await write(client, method, john, **none)
        assert (refused.status_code, refused.json()) == (412, ALREADY_STORED), method
        assert refused.headers["etag"] == '"1"'
    assert (await snapshot(client, john))[0]["metadata"] == {"by": "first"}
    await write(client, "DELETE", john)
    again = await client.patch(ACME, json={"metadata": {"by": "second"}}, headers={**john, **none})
    assert (again.status_code, again.json()["metadata"]) == (200, {"by": "second"})


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
async def test_if_none_match_naming_the_current_etag_refuses_the_write(
    client: httpx.AsyncClient, acme: Users, method: str
) -> None:
    """`If-None-Match: "n"` (weak comparison, so `W/"n"` too) refuses while the version is n,
    and lets the write through once the record has moved on."""
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    etag = before[1]
    for value in (etag, f"W/{etag}", f'"99", {etag}'):
        response = await write(client, method, john, **{"If-None-Match": value})
        assert (response.status_code, response.json()) == (412, STILL_THAT_ETAG), value
        assert response.headers["etag"] == etag
    assert await snapshot(client, john) == before
    response = await write(client, method, john, **{"If-None-Match": '"99", W/"98"'})
    assert response.status_code in (200, 204)


async def test_if_match_and_if_none_match_on_one_write_must_both_hold(
    client: httpx.AsyncClient, acme: Users
) -> None:
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    both = {"If-Match": before[1], "If-None-Match": "*"}
    refused = await write(client, "PATCH", john, **both)
    assert (refused.status_code, refused.json()) == (412, ALREADY_STORED)
    assert await snapshot(client, john) == before
    both = {"If-Match": '"98"', "If-None-Match": '"97"'}
    refused = await write(client, "PATCH", john, **both)
    assert (refused.status_code, refused.json()) == (412, PRECONDITION_FAILED)
    both = {"If-Match": before[1], "If-None-Match": '"0"'}
    assert (await write(client, "PATCH", john, **both)).status_code == 200


async def test_refused_requests_are_checked_before_the_precondition(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """Authorization comes first: a stranger's If-Match learns nothing (403, not 412)."""
    response = await client.put(
        ACME, json={"metadata": {}}, headers=with_header(acme["eve"], "If-Match", '"5"')
    )
    assert response.status_code == 403


async def test_admin_writes_another_users_record_with_if_match(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """If-Match applies to the record the request names, here john's via an admin."""
    url = ACME + "&username=john_doe"
    etag = (await write(client, "PUT", acme["john"])).headers["etag"]
    stale = await client.patch(
        url, json={"metadata": {"x": 1}}, headers=with_header(acme["admin"], "If-Match", '"9"')
    )
    fresh = await client.patch(
        url, json={"metadata": {"x": 1}}, headers=with_header(acme["admin"], "If-Match", etag)
    )
    assert (stale.status_code, fresh.status_code) == (412, 200)
    assert fresh.json()["metadata"] == {"p": 2, "x": 1}


async def append_tag(client: httpx.AsyncClient, url: str, headers: dict[str, str], tag: str) -> int:
    """The read-modify-write recipe of docs/consistency.md; returns the attempts it took."""
    for attempt in range(1, 51):
        current = await client.get(url, headers=headers)
        tags = current.json()["metadata"].get("tags", [])
        await asyncio.sleep(0)  # the client thinks; others write meanwhile
        response = await client.patch(
            url,
            json={"metadata": {"tags": [*tags, tag]}},
            headers={**headers, "If-Match": current.headers["ETag"]},
        )
        if response.status_code != 412:
            response.raise_for_status()
            return attempt
    raise RuntimeError("too much contention")


async def test_read_modify_write_with_if_match_loses_no_update(
    client: httpx.AsyncClient, acme: Users
) -> None:
    """Concurrent GET → If-Match → retry-on-412 appends: every tag lands exactly once."""
    attempts = await asyncio.gather(
        *(append_tag(client, ACME, acme["john"], f"t{n}") for n in range(12))
    )
    tags = (await snapshot(client, acme["john"]))[0]["metadata"]["tags"]
    assert sorted(tags) == sorted(f"t{n}" for n in range(12))
    assert max(attempts) > 1, "the appends did contend"


# --- Header lists: several field lines, empty elements, opaque tags, a bound --------------------

Lines = list[tuple[str, str]]
TOO_MANY = {
    "detail": "If-Match lists more than the limit of 64 entity tags.",
    "limit": "max_etags",
    "value": 64,
}
MALFORMED_NONE_MATCH = {
    "detail": "Precondition failed: If-None-Match is not * or a list of entity tags."
}


async def write_lines(
    client: httpx.AsyncClient, method: str, headers: dict[str, str], lines: Lines
) -> httpx.Response:
    """A write with `lines` sent as separate header field lines, in order."""
    body = {"PATCH": {"metadata": {"n": 1}}, "PUT": {"metadata": {"p": 2}}}.get(method)
    return await client.request(method, ACME, json=body, headers=[*headers.items(), *lines])


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
async def test_if_none_match_star_on_a_second_line_still_refuses_the_write(
    client: httpx.AsyncClient, acme: Users, method: str
) -> None:
    """RFC 9110 5.3: the lines form one list, `"999", *`, which is not a valid value: a write
    that a `*` on any line would refuse is refused, never let through by the first line."""
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    lines = [("If-None-Match", '"999"'), ("If-None-Match", "*")]
    response = await write_lines(client, method, john, lines)
    assert (response.status_code, response.json()) == (412, MALFORMED_NONE_MATCH)
    assert await snapshot(client, john) == before


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
async def test_a_tag_on_a_later_line_counts(
    client: httpx.AsyncClient, acme: Users, method: str
) -> None:
    """The current ETag on the second If-Match line lets the write through; on the second
    If-None-Match line it refuses it; on a GET it answers 304."""
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    etag = before[1]
    refused = await write_lines(
        client, method, john, [("If-None-Match", '"999"'), ("If-None-Match", etag)]
    )
    assert (refused.status_code, refused.json()) == (412, STILL_THAT_ETAG)
    assert await snapshot(client, john) == before
    cached = await client.get(
        ACME, headers=[*john.items(), ("If-None-Match", '"9"'), ("If-None-Match", etag)]
    )
    assert cached.status_code == 304
    written = await write_lines(client, method, john, [("If-Match", '"999"'), ("If-Match", etag)])
    assert written.status_code == (204 if method == "DELETE" else 200), written.text
    assert (await snapshot(client, john))[1] != etag


@pytest.mark.parametrize("header", ['"999",,"{v}"', ',"{v}"', '"{v}",', ' , ,\t"{v}" , '])
async def test_empty_list_elements_are_skipped(
    client: httpx.AsyncClient, acme: Users, header: str
) -> None:
    """RFC 9110 5.6.1: recipients accept empty elements; the tags around them still count."""
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    value = header.format(v=before[1].strip('"'))
    refused = await write(client, "PUT", john, **{"If-None-Match": value})
    assert (refused.status_code, refused.json()) == (412, STILL_THAT_ETAG)
    assert await snapshot(client, john) == before
    assert (await client.get(ACME, headers={**john, "If-None-Match": value})).status_code == 304
    written = await write(client, "PATCH", john, **{"If-Match": value})
    assert written.status_code == 200, written.text


@pytest.mark.parametrize("header", [",", " , ,", ""])
async def test_a_list_of_only_empty_elements_is_malformed(
    client: httpx.AsyncClient, acme: Users, header: str
) -> None:
    """No tag at all is not a valid value of either header: it never lets a write through."""
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    response = await write(client, "PUT", john, **{"If-None-Match": header})
    assert (response.status_code, response.json()) == (412, MALFORMED_NONE_MATCH)
    response = await write(client, "PUT", john, **{"If-Match": header})
    assert (response.status_code, response.json()) == (412, PRECONDITION_FAILED)
    assert await snapshot(client, john) == before


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
async def test_etags_are_opaque_text_not_numbers(
    client: httpx.AsyncClient, acme: Users, method: str
) -> None:
    """`"05"` was never issued, so it names nothing: not version 5 in If-Match, not in
    If-None-Match, not on a GET."""
    john = acme["john"]
    for _ in range(4):
        await write(client, "PATCH", john)
    before = await snapshot(client, john)
    assert before[1] == '"4"'
    for spelling in ('"04"', '"004"', '"+4"', '" 4"', '"4 "', '"4.0"', '"0x4"'):
        refused = await write(client, method, john, **{"If-Match": spelling})
        assert (refused.status_code, refused.json()) == (412, PRECONDITION_FAILED), spelling
        assert await snapshot(client, john) == before
        full = await client.get(ACME, headers={**john, "If-None-Match": spelling})
        assert full.status_code == 200, spelling
    written = await write(client, method, john, **{"If-None-Match": '"04"'})
    assert written.status_code == (204 if method == "DELETE" else 200), written.text


async def test_version_zero_is_spelled_0(client: httpx.AsyncClient, acme: Users) -> None:
    """`"0"` (nothing ever stored) still works as create-only; `"00"` names nothing."""
    john = acme["john"]
    refused = await write(client, "PUT", john, **{"If-Match": '"00"'})
    assert refused.status_code == 412
    assert (await write(client, "PUT", john, **{"If-Match": '"0"'})).status_code == 200


@pytest.mark.parametrize("name", ["If-Match", "If-None-Match"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
async def test_a_list_longer_than_max_etags_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, acme: Users, name: str, method: str
) -> None:
    """65 tags, on one line or spread over several: 400 naming the limit, nothing written;
    64 (the default limit) are fine."""
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    body = {**TOO_MANY, "detail": TOO_MANY["detail"].replace("If-Match", name)}
    many = [f'"{900 + i}"' for i in range(65)]
    one_line = [(name, ", ".join(many))]
    two_lines = [(name, ", ".join(many[:40])), (name, ", ".join(many[40:]))]
    for lines in (one_line, two_lines):
        response = await client.request(
            method,
            ACME,
            json={"metadata": {"x": 1}} if method in ("PATCH", "PUT") else None,
            headers=[*john.items(), *lines],
        )
        assert (response.status_code, response.json()) == (400, body)
        assert await snapshot(client, john) == before
    allowed = ", ".join([*many[:63], before[1]])
    response = await client.request(
        method,
        ACME,
        json={"metadata": {"x": 1}} if method in ("PATCH", "PUT") else None,
        headers={**john, name: allowed},
    )
    expected = {
        ("GET", "If-Match"): 200,
        ("GET", "If-None-Match"): 304,
        ("DELETE", "If-Match"): 204,
    }.get((method, name), 200 if name == "If-Match" else 412)
    assert response.status_code == expected, response.text


async def test_parsing_stops_at_the_limit(client: httpx.AsyncClient, acme: Users) -> None:
    """A megabyte of tags ending in garbage gets the limit's 400, not the malformed 412: the
    list was not read past its 65th tag."""
    john = acme["john"]
    await write(client, "PUT", john)
    before = await snapshot(client, john)
    huge = '"1", ' * 200_000 + "garbage"
    response = await write(client, "PATCH", john, **{"If-Match": huge})
    assert (response.status_code, response.json()) == (400, TOO_MANY)
    assert await snapshot(client, john) == before


async def test_max_etags_is_configurable(auth: object, store: object) -> None:
    """`Limits(max_etags=2)` refuses a third tag, and says so."""
    from starlette_platform_metadata import Limits, PlatformMetadataApp

    from .conftest import FakeAuth

    assert isinstance(auth, FakeAuth)
    john = auth.add("acme-corp", "john_doe")
    limits = Limits(max_etags=2)
    app = PlatformMetadataApp(auth=auth, store=store, limits=limits)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as c:
        path = "/?platform_key=acme-corp"
        ok = await c.get(path, headers={**john, "If-None-Match": '"1", "2"'})
        assert ok.status_code == 200
        refused = await c.get(path, headers={**john, "If-None-Match": '"1", "2", "3"'})
        assert refused.status_code == 400
        assert refused.json() == {
            "detail": "If-None-Match lists more than the limit of 2 entity tags.",
            "limit": "max_etags",
            "value": 2,
        }
