"""The platform policy resource, `<mount>/policy/` (EXTENSIONS.md section 1), over every store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from starlette_platform_metadata import (
    DatabaseStore,
    MemoryStore,
    PlatformMetadataApp,
    PlatformMetadataMiddleware,
    Policy,
    PolicyLimits,
    Store,
)
from starlette_platform_metadata.policy import parse_policy
from starlette_platform_metadata.stores import POLICY_USERNAME

from .conftest import DATABASE_KINDS, POSTGRES_URL, URL, FakeAuth

pytestmark = pytest.mark.anyio

POLICY = URL + "policy/?platform_key=acme-corp"
META = URL + "?platform_key=acme-corp"
DEFAULT = {
    "platform_key": "acme-corp",
    "protected_keys": [],
    "private_keys": [],
    "schema": None,
    "version": 0,
    "updated_at": None,
}
PLAN_SCHEMA = {
    "type": "object",
    "properties": {"plan": {"enum": ["free", "pro"]}, "age": {"type": "integer"}},
}

Headers = dict[str, dict[str, str]]


async def test_a_platform_without_a_policy_answers_the_default(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    response = await client.get(POLICY, headers=acme["admin"])
    assert response.status_code == 200
    assert response.json() == DEFAULT
    assert response.headers["etag"] == '"0"'
    member = await client.get(POLICY, headers=acme["john"])
    assert member.json() == {k: v for k, v in DEFAULT.items() if k != "private_keys"}


async def test_the_path_without_trailing_slash_answers_too(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    response = await client.get(URL + "policy?platform_key=acme-corp", headers=acme["admin"])
    assert response.json() == DEFAULT


async def test_put_then_get_round_trips_with_versions_and_etags(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    body = {"protected_keys": ["plan", "billing_*"], "private_keys": ["notes"]}
    response = await client.put(POLICY, json=body, headers=acme["admin"])
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["protected_keys"] == ["plan", "billing_*"]
    assert saved["private_keys"] == ["notes"]
    assert saved["schema"] is None and saved["version"] == 1
    assert saved["updated_at"].endswith("Z")
    assert saved["violating_documents"] == 0 and saved["examples"] == []
    assert response.headers["etag"] == '"1"'
    got = await client.get(POLICY, headers=acme["admin"])
    report = ("violating_documents", "examples")
    assert got.json() == {k: v for k, v in saved.items() if k not in report}
    assert got.headers["etag"] == '"1"'
    member = (await client.get(POLICY, headers=acme["john"])).json()
    assert "private_keys" not in member and member["protected_keys"] == ["plan", "billing_*"]
    deleted = await client.delete(POLICY, headers=acme["admin"])
    assert deleted.status_code == 204
    after = await client.get(POLICY, headers=acme["admin"])
    assert {**after.json(), "updated_at": None} == {**DEFAULT, "version": 2}
    assert after.json()["updated_at"] is not None
    assert after.headers["etag"] == '"2"'


async def test_if_none_match_on_get_answers_304(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    await client.put(POLICY, json={"protected_keys": ["a"]}, headers=acme["admin"])
    response = await client.get(POLICY, headers={**acme["john"], "If-None-Match": '"1"'})
    assert response.status_code == 304 and response.headers["etag"] == '"1"'


async def test_if_match_guards_put_and_delete(client: httpx.AsyncClient, acme: Headers) -> None:
    admin = acme["admin"]
    await client.put(POLICY, json={"protected_keys": ["a"]}, headers=admin)
    stale = await client.put(
        POLICY, json={"protected_keys": ["b"]}, headers={**admin, "If-Match": '"0"'}
    )
    assert stale.status_code == 412 and stale.headers["etag"] == '"1"'
    assert stale.json() == {
        "detail": "Precondition failed: the metadata changed since the given ETag."
    }
    stale_delete = await client.delete(POLICY, headers={**admin, "If-Match": '"7"'})
    assert stale_delete.status_code == 412
    assert (await client.get(POLICY, headers=admin)).json()["protected_keys"] == ["a"]
    fresh = await client.put(
        POLICY, json={"protected_keys": ["b"]}, headers={**admin, "If-Match": '"1"'}
    )
    assert fresh.status_code == 200 and fresh.json()["version"] == 2
    gone = await client.delete(POLICY, headers={**admin, "If-Match": '"2"'})
    assert gone.status_code == 204


async def test_members_may_not_change_the_policy(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    forbidden = {"error": "Only tenant admins can change the platform policy"}
    for request in (
        client.put(POLICY, json={"protected_keys": ["a"]}, headers=acme["john"]),
        client.delete(POLICY, headers=acme["john"]),
    ):
        response = await request
        assert (response.status_code, response.json()) == (403, forbidden)
    assert (await client.get(POLICY, headers=acme["admin"])).json() == DEFAULT


async def test_other_platforms_people_are_refused(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    """An admin of `other` cannot touch acme's policy; a member of `other` cannot read it."""
    not_member = {"error": "You are not a member of this platform"}
    for request in (
        client.get(POLICY, headers=acme["eve"]),
        client.get(POLICY, headers=acme["other_admin"]),
        client.put(POLICY, json={"protected_keys": ["a"]}, headers=acme["other_admin"]),
        client.delete(POLICY, headers=acme["other_admin"]),
    ):
        response = await request
        assert (response.status_code, response.json()) == (403, not_member)
    assert (await client.get(POLICY, headers=acme["admin"])).json() == DEFAULT


async def test_query_and_auth_errors_follow_the_contract_order(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    assert (await client.get(POLICY)).status_code == 401
    missing = await client.get(URL + "policy/", headers=acme["john"])
    assert (missing.status_code, missing.json()) == (
        400,
        {"error": "platform_key query parameter is required"},
    )
    unknown = await client.get(URL + "policy/?platform_key=nope", headers=acme["john"])
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Platform not found"})
    post = await client.post(POLICY, headers=acme["admin"])
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, PUT, DELETE, HEAD, OPTIONS"
    patch = await client.patch(POLICY, json={}, headers=acme["admin"])
    assert patch.status_code == 405


async def test_username_is_ignored_on_the_policy_path(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    response = await client.get(POLICY + "&username=jane", headers=acme["john"])
    assert response.status_code == 200


async def test_invalid_policies_are_400_in_drf_shape_and_change_nothing(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    admin = acme["admin"]
    bad = await client.put(POLICY, json={"protected_keys": [1]}, headers=admin)
    assert bad.status_code == 400
    assert bad.json() == {"protected_keys": {"0": ["Not a valid string."]}}
    both = await client.put(
        POLICY, json={"protected_keys": ["a*"], "private_keys": ["ab"]}, headers=admin
    )
    assert both.status_code == 400 and "non_field_errors" in both.json()
    schema = await client.put(POLICY, json={"schema": {"$ref": "http://x/y"}}, headers=admin)
    assert schema.status_code == 400 and list(schema.json()) == ["schema"]
    not_json = await client.put(
        POLICY, content=b"{", headers={**admin, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and not_json.json()["detail"].startswith("JSON parse error")
    assert (await client.get(POLICY, headers=admin)).json() == DEFAULT


async def test_a_deep_schema_is_accepted_up_to_the_policy_depth(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    """The metadata depth limit (10) does not apply to schemas; the policy's (32) does."""
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(12):
        schema = {"type": "object", "properties": {"a": schema}}
    response = await client.put(POLICY, json={"schema": schema}, headers=acme["admin"])
    assert response.status_code == 200, response.text


async def test_dry_run_reports_and_saves_nothing(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    admin = acme["admin"]
    john = META + "&username=john_doe"
    await client.put(john, json={"metadata": {"plan": "gold"}}, headers=admin)
    await client.put(META + "&username=jane", json={"metadata": {"plan": "pro"}}, headers=admin)
    dry = await client.put(POLICY + "&dry_run=true", json={"schema": PLAN_SCHEMA}, headers=admin)
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert body["version"] == 0 and body["updated_at"] is None
    assert body["schema"] == PLAN_SCHEMA
    assert body["violating_documents"] == 1
    assert [example["username"] for example in body["examples"]] == ["john_doe"]
    assert len(body["examples"][0]["errors"]) == 1
    assert body["examples"][0]["errors"][0].startswith("/plan: ")
    assert (await client.get(POLICY, headers=admin)).json() == DEFAULT
    # Nothing is enforced, and the next real PUT is version 1.
    write = await client.patch(META, json={"metadata": {"plan": "other"}}, headers=acme["john"])
    assert write.status_code == 200
    real = await client.put(POLICY + "&dry_run=false", json={"schema": PLAN_SCHEMA}, headers=admin)
    assert real.json()["version"] == 1 and real.json()["violating_documents"] == 1


async def test_dry_run_must_be_a_boolean(client: httpx.AsyncClient, acme: Headers) -> None:
    response = await client.put(POLICY + "&dry_run=maybe", json={}, headers=acme["admin"])
    assert (response.status_code, response.json()) == (
        400,
        {"dry_run": ["Must be a valid boolean."]},
    )


async def test_violating_documents_counts_every_page_and_lists_at_most_20(
    client: httpx.AsyncClient, acme: Headers, auth: FakeAuth
) -> None:
    admin = acme["admin"]
    for i in range(230):
        auth.add("acme-corp", f"user{i:03d}")
        plan = "bad" if i % 5 == 0 else "pro"
        document = {"plan": plan}
        url = META + f"&username=user{i:03d}"
        await client.put(url, json={"metadata": document}, headers=admin)
    # Tombstones do not count.
    await client.delete(META + "&username=user000", headers=admin)
    response = await client.put(POLICY, json={"schema": PLAN_SCHEMA}, headers=admin)
    body = response.json()
    assert body["violating_documents"] == 45
    assert len(body["examples"]) == 20
    assert body["examples"][0]["username"] == "user005"


async def test_a_store_without_records_answers_null(acme: Headers, auth: FakeAuth) -> None:
    class Plain:
        def __init__(self) -> None:
            self.inner = MemoryStore()

        async def get(self, platform_key: str, username: str) -> Any:
            return await self.inner.get(platform_key, username)

        async def update(self, platform_key: str, username: str, change: Any) -> Any:
            return await self.inner.update(platform_key, username, change)

    app = PlatformMetadataApp(auth=auth, store=Plain())
    async with _client(app) as client:
        response = await client.put(
            "/policy/?platform_key=acme-corp", json={"schema": PLAN_SCHEMA}, headers=acme["admin"]
        )
        assert response.json()["violating_documents"] is None
        assert response.json()["examples"] == []
        no_schema = await client.put(
            "/policy/?platform_key=acme-corp", json={}, headers=acme["admin"]
        )
        assert no_schema.json()["violating_documents"] == 0


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.mark.parametrize("kind", ["mapping", "callable", "async"])
async def test_host_fixed_policies_are_served_and_cannot_be_changed(
    kind: str, acme: Headers, auth: FakeAuth, store: Store
) -> None:
    fixed = {"protected_keys": ["plan"], "private_keys": ["notes"]}
    policies: Any
    if kind == "mapping":
        policies = {"acme-corp": fixed}
    elif kind == "callable":
        compiled = parse_policy(fixed, PolicyLimits())

        def policies(key: str) -> Policy | None:
            return compiled if key == "acme-corp" else None

    else:

        async def policies(key: str) -> dict[str, Any] | None:
            return fixed if key == "acme-corp" else None

    app = PlatformMetadataApp(auth=auth, store=store, policies=policies)
    async with _client(app) as client:
        got = await client.get("/policy/?platform_key=acme-corp", headers=acme["admin"])
        assert got.json()["protected_keys"] == ["plan"] and got.json()["private_keys"] == ["notes"]
        managed = {"error": "The platform policy is managed by the host application"}
        for response in (
            await client.put("/policy/?platform_key=acme-corp", json={}, headers=acme["admin"]),
            await client.delete("/policy/?platform_key=acme-corp", headers=acme["admin"]),
        ):
            assert (response.status_code, response.json()) == (403, managed)
        # Enforced on metadata too.
        await client.put(
            "/?platform_key=acme-corp&username=john_doe",
            json={"metadata": {"plan": "pro", "notes": "x"}},
            headers=acme["admin"],
        )
        refused = await client.patch(
            "/?platform_key=acme-corp", json={"metadata": {"plan": "free"}}, headers=acme["john"]
        )
        assert refused.status_code == 403
        mine = await client.get("/?platform_key=acme-corp", headers=acme["john"])
        assert mine.json()["metadata"] == {"plan": "pro"}
        # Other platforms keep their stored policy, which may change.
        other = await client.put(
            "/policy/?platform_key=other",
            json={"protected_keys": ["x"]},
            headers=acme["other_admin"],
        )
        assert other.status_code == 200


def test_a_bad_fixed_policy_fails_when_the_app_is_built(auth: FakeAuth) -> None:
    from starlette_platform_metadata import PolicyInvalid

    with pytest.raises(PolicyInvalid):
        PlatformMetadataApp(auth=auth, store=MemoryStore(), policies={"p": {"protected_keys": 1}})


async def test_the_middleware_serves_the_policy_path(acme: Headers, auth: FakeAuth) -> None:
    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = PlatformMetadataMiddleware(fallback, auth=auth, store=MemoryStore())
    async with _client(app) as client:
        for path in (URL + "policy/", URL + "policy"):
            response = await client.get(path + "?platform_key=acme-corp", headers=acme["john"])
            assert response.status_code == 200
        assert (await client.get(URL + "policyx", headers=acme["john"])).status_code == 418


@pytest.mark.parametrize("kind", DATABASE_KINDS)
async def test_a_policy_change_is_in_force_at_once_through_another_store_instance(
    kind: str, tmp_path: Path, acme: Headers, auth: FakeAuth
) -> None:
    """Two apps, each with its own DatabaseStore on one database: no stale policy."""
    if kind == "sqlite":
        url, table = f"sqlite:///{tmp_path / 'shared.db'}", "platform_metadata"
    else:
        assert POSTGRES_URL is not None
        url, table = POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}"
    first, second = DatabaseStore(url, table=table), DatabaseStore(url, table=table)
    try:
        app_a = PlatformMetadataApp(auth=auth, store=first)
        app_b = PlatformMetadataApp(auth=auth, store=second)
        async with _client(app_a) as a, _client(app_b) as b:
            assert (await b.patch("/?platform_key=acme-corp", json={"metadata": {"plan": "x"}},
                                  headers=acme["john"])).status_code == 200  # fmt: skip
            await a.put("/policy/?platform_key=acme-corp", json={"protected_keys": ["plan"]},
                        headers=acme["admin"])  # fmt: skip
            refused = await b.patch(
                "/?platform_key=acme-corp", json={"metadata": {"plan": "y"}}, headers=acme["john"]
            )
            assert refused.status_code == 403
            await a.delete("/policy/?platform_key=acme-corp", headers=acme["admin"])
            allowed = await b.patch(
                "/?platform_key=acme-corp", json={"metadata": {"plan": "y"}}, headers=acme["john"]
            )
            assert allowed.status_code == 200
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_the_policy_record_is_not_reachable_as_metadata(
    client: httpx.AsyncClient, acme: Headers, store: Store
) -> None:
    """The reserved username cannot be named in a request."""
    await client.put(POLICY, json={"protected_keys": ["a"]}, headers=acme["admin"])
    response = await client.get(
        META + "&username=%01policy", headers=acme["admin"]
    )
    assert response.status_code == 400
    assert (await store.get("acme-corp", POLICY_USERNAME)).version == 1


def test_policy_objects_are_accepted_as_fixed(auth: FakeAuth) -> None:
    PlatformMetadataApp(auth=auth, store=MemoryStore(), policies={"p": Policy(("a",))})


async def test_options_describes_the_policy_resource(
    client: httpx.AsyncClient, acme: Headers
) -> None:
    response = await client.options(POLICY, headers=acme["john"])
    assert response.status_code == 200 and response.json()["name"] == "Platform Policy"
    assert response.headers["allow"] == "GET, PUT, DELETE, HEAD, OPTIONS"


async def test_readme_feature_flag_example(client: httpx.AsyncClient, acme: Headers) -> None:
    """README "Protecting keys": once `features` is protected, the member cannot change it."""
    flags = {"newDashboard": True, "aiAssistant": True, "advancedReports": False}
    admin, john = acme["admin"], acme["john"]
    await client.patch(META + "&username=john_doe", json={"metadata": {"features": flags}},
                       headers=admin)  # fmt: skip
    own = {"features": {**flags, "advancedReports": True}}
    assert (await client.patch(META, json={"metadata": own}, headers=john)).status_code == 200
    await client.patch(META + "&username=john_doe", json={"metadata": {"features": flags}},
                       headers=admin)  # fmt: skip
    await client.put(POLICY, json={"protected_keys": ["features"]}, headers=admin)
    response = await client.patch(META, json={"metadata": own}, headers=john)
    assert (response.status_code, response.json()) == (
        403,
        {"error": "Only tenant admins can change these keys", "keys": ["features"]},
    )
    assert (await client.get(META, headers=john)).json()["metadata"] == {"features": flags}


async def test_dry_run_checks_if_match(client: httpx.AsyncClient, acme: Headers) -> None:
    admin = acme["admin"]
    await client.put(POLICY, json={"protected_keys": ["a"]}, headers=admin)
    stale = await client.put(
        POLICY + "&dry_run=1", json={}, headers={**admin, "If-Match": '"0"'}
    )
    assert stale.status_code == 412 and stale.headers["etag"] == '"1"'
    fresh = await client.put(POLICY + "&dry_run=1", json={}, headers={**admin, "If-Match": '"1"'})
    assert fresh.status_code == 200 and fresh.json()["protected_keys"] == []
    assert fresh.headers["etag"] == '"1"'
    assert (await client.get(POLICY, headers=admin)).json()["protected_keys"] == ["a"]


async def test_head_of_the_policy_has_no_body(client: httpx.AsyncClient, acme: Headers) -> None:
    response = await client.head(POLICY, headers=acme["john"])
    assert response.status_code == 200 and response.content == b""
    assert response.headers["etag"] == '"0"'


async def test_an_identity_named_like_the_policy_record_is_refused(
    client: httpx.AsyncClient, auth: FakeAuth, acme: Headers, store: Store
) -> None:
    """Even a backend that authenticates such a user cannot reach the policy record."""
    headers = auth.add("acme-corp", POLICY_USERNAME)
    await client.put(POLICY, json={"protected_keys": ["a"]}, headers=acme["admin"])
    before = await store.get("acme-corp", POLICY_USERNAME)
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = await client.request(method, META, json={"metadata": {"x": 1}}, headers=headers)
        assert response.status_code == 403
    assert await store.get("acme-corp", POLICY_USERNAME) == before
