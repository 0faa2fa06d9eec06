"""``/api/v1``: entries with inclusion proofs, consistency proofs, checkpoints, keys, appends.

Proofs are checked the way a client would: the checkpoint note against the
log's verifier key from ``/log/vkey``, then RFC 9162 verification of the
returned hashes.  Every refused append must leave the database exactly as it
was (``tests.helpers.dump``) and answer with a JSON error carrying a code.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from ledger import canonical
from ledger.entry import MAX_LEAF_SIZE
from ledger.errors import VerificationError
from ledger.log import MAX_BATCH, Log
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.note import Signer, Verifier
from ledger.tokens import create_token, revoke_token
from tests.conftest import Site
from tests.helpers import check_ledger, dump, new_signer
from tests.web.support import (
    ModuleSite,
    add_notes,
    b64,
    checked,
    make_site,
    note_json,
    register,
    revoke,
    served_verifier,
    statement,
)
from web.openapi import OPENAPI

# --- helpers ------------------------------------------------------------------------------


def assert_json_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.content_type == "application/json", response.content_type
    body = response.get_json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and re.fullmatch(r"[a-z][a-z0-9_]*", error["code"])
    assert isinstance(error["message"], str) and error["message"].strip()
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture
def token(site: Site) -> str:
    return create_token(site.instance.engine, "t1")


@pytest.fixture(scope="module")
def reading(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    """A log of 100 entries in checkpoints of sizes 1, 10, 40 and 100; tests only read it."""
    with make_site(tmp_path_factory.mktemp("reading")) as made:
        for number, count in enumerate([9, 30, 60]):
            add_notes(made.log, made.admin, count, batch=count, prefix=f"batch {number}")
        yield made


@dataclass
class Writing:
    site: ModuleSite
    token: str
    bob: Signer
    carol: Signer  # registered, then revoked


@pytest.fixture(scope="module")
def writing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Writing]:
    """A log shared by the refusal tests: each must leave it exactly as it found it."""
    with make_site(tmp_path_factory.mktemp("writing")) as made:
        bob = register(made.log, made.admin, "bob")
        carol = register(made.log, made.admin, "carol")
        revoke(made.log, made.admin, carol)
        yield Writing(made, create_token(made.instance.engine, "shared"), bob, carol)


def post(client: FlaskClient, body: Any, token: str | None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    data = body if isinstance(body, (bytes, str)) else json.dumps(body, ensure_ascii=False)
    kwargs.setdefault("content_type", "application/json")
    return client.post("/api/v1/entries", data=data, headers=headers, **kwargs)


# --- GET /entries/<seq> -------------------------------------------------------------------


def check_entry_response(body: dict[str, Any], verifier: Verifier, seq: int, size: int) -> None:
    cp = checked(body["checkpoint"], verifier)
    assert cp.size == size
    leaf = b64(body["leaf"])
    digest = leaf_hash(leaf)
    assert body["seq"] == seq
    assert body["leaf_hash"] == digest.hex()
    assert body["entry"] == canonical.parse(leaf)
    assert body["entry"]["seq"] == seq
    proof = body["inclusion_proof"]
    assert proof["leaf_index"] == seq and proof["tree_size"] == size
    hashes = [b64(h) for h in proof["hashes"]]
    verify_inclusion(digest, seq, size, hashes, cp.root)
    # The proof is for this leaf at this place, nothing else.
    with pytest.raises(VerificationError):
        verify_inclusion(leaf_hash(leaf + b" "), seq, size, hashes, cp.root)


def test_entry_with_inclusion_proof_against_the_newest_checkpoint(reading: ModuleSite) -> None:
    client = reading.client
    verifier = served_verifier(client)
    for seq in [0, 1, 9, 10, 39, 64, 99]:
        response = client.get(f"/api/v1/entries/{seq}")
        assert response.status_code == 200
        assert response.content_type == "application/json"
        check_entry_response(response.get_json(), verifier, seq, 100)


def test_entry_with_inclusion_proof_against_an_older_checkpoint(reading: ModuleSite) -> None:
    client = reading.client
    verifier = served_verifier(client)
    for size in [10, 40, 100]:
        for seq in {0, size // 2, size - 1}:
            response = client.get(f"/api/v1/entries/{seq}?size={size}")
            assert response.status_code == 200, response.get_json()
            check_entry_response(response.get_json(), verifier, seq, size)


def test_an_answer_pinned_to_a_size_is_immutable_and_the_same_when_cached(
    reading: ModuleSite,
) -> None:
    client = reading.client
    verifier = served_verifier(client)
    first = client.get("/api/v1/entries/7?size=40")
    again = client.get("/api/v1/entries/7?size=40")
    assert first.headers["Cache-Control"] == again.headers["Cache-Control"]
    assert "immutable" in first.headers["Cache-Control"]
    assert first.get_data() == again.get_data()
    check_entry_response(again.get_json(), verifier, 7, 40)
    # a refused size is never cached as an answer
    assert client.get("/api/v1/entries/50?size=40").status_code == 400
    assert client.get("/api/v1/entries/50?size=40").status_code == 400
    newest = client.get("/api/v1/entries/7")
    assert newest.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/api/v1/entries/100", 404, "not_found"),  # == size
        ("/api/v1/entries/101", 404, "not_found"),
        ("/api/v1/entries/99999999999999999999999", 404, "not_found"),
        ("/api/v1/entries/50?size=40", 400, "invalid_input"),  # not in that tree
        ("/api/v1/entries/1?size=abc", 400, "invalid_input"),
        ("/api/v1/entries/1?size=", 400, "invalid_input"),
        ("/api/v1/entries/1?size=1.5", 400, "invalid_input"),
        ("/api/v1/entries/1?size=-1", 400, "invalid_input"),
        ("/api/v1/entries/1?size=0", 400, "invalid_input"),
        ("/api/v1/entries/1?size=101", 404, "not_found"),  # beyond the log (a lagging replica)
        ("/api/v1/entries/1?size=%2B5", 400, "invalid_input"),
        ("/api/v1/entries/1?size=0x10", 400, "invalid_input"),
        ("/api/v1/entries/1?size=5", 404, "not_found"),  # no checkpoint of that size
    ],
)
def test_entry_errors(reading: ModuleSite, url: str, status: int, code: str) -> None:
    assert_json_error(reading.client.get(url), status, code)


UNICODE_DIGITS = [
    "/api/v1/entries/1?size=%C2%B2",  # '²': str.isdigit() is True, int() raises
    "/api/v1/proofs/consistency?from=%C2%B2",
    "/api/v1/checkpoints?limit=%C2%B2",
    "/api/v1/entries/0?size=%D9%A1",  # ARABIC-INDIC DIGIT ONE: int() reads it as 1
]


@pytest.mark.parametrize("url", UNICODE_DIGITS)
def test_query_integers_are_ascii_decimal(
    reading: ModuleSite, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setitem(reading.app.config, "PROPAGATE_EXCEPTIONS", False)  # as in production
    assert_json_error(reading.client.get(url), 400, "invalid_input")


# --- GET /proofs/consistency and /checkpoints -------------------------------------------


def all_checkpoints(client: FlaskClient, verifier: Verifier) -> dict[int, Any]:
    """Walk /checkpoints page by page (limit 2); verify each note and its listed root."""
    found: dict[int, Any] = {}
    before: int | None = None
    while True:
        url = "/api/v1/checkpoints?limit=2" + ("" if before is None else f"&before={before}")
        body = client.get(url).get_json()
        for item in body["checkpoints"]:
            cp = checked(item["note"], verifier)
            assert cp.size == item["size"] and base64.b64encode(cp.root).decode() == item["root"]
            assert item["size"] not in found
            found[item["size"]] = cp
        sizes = [c["size"] for c in body["checkpoints"]]
        assert sizes == sorted(sizes, reverse=True)
        if body["next_before"] is None:
            return found
        before = body["next_before"]


def test_checkpoints_pages_newest_first(reading: ModuleSite) -> None:
    client = reading.client
    found = all_checkpoints(client, served_verifier(client))
    assert sorted(found) == [0, 1, 10, 40, 100]
    assert client.get("/api/v1/checkpoints?before=0").get_json()["checkpoints"] == []


def test_consistency_proofs_verify_between_checkpoints(reading: ModuleSite) -> None:
    client = reading.client
    verifier = served_verifier(client)
    cps = all_checkpoints(client, verifier)
    sizes = [s for s in sorted(cps) if s]
    for i, old in enumerate(sizes):
        for new in sizes[i:]:
            response = client.get(f"/api/v1/proofs/consistency?from={old}&to={new}")
            assert response.status_code == 200, response.get_json()
            body = response.get_json()
            assert (body["from"], body["to"]) == (old, new)
            head = checked(body["checkpoint"], verifier)
            assert head.size == new and head.root == cps[new].root
            proof = [b64(h) for h in body["hashes"]]
            verify_consistency(old, new, proof, cps[old].root, head.root)
            if old != new:
                with pytest.raises(VerificationError):
                    verify_consistency(old, new, proof, cps[new].root, head.root)
    # ``to`` defaults to the newest checkpoint.
    body = client.get("/api/v1/proofs/consistency?from=10").get_json()
    assert body["to"] == 100
    proof = [b64(h) for h in body["hashes"]]
    verify_consistency(10, 100, proof, cps[10].root, checked(body["checkpoint"], verifier).root)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("", 400, "invalid_input"),  # from is required
        ("?to=40", 400, "invalid_input"),
        ("?from=0", 400, "invalid_input"),
        ("?from=-1", 400, "invalid_input"),
        ("?from=x", 400, "invalid_input"),
        ("?from=1.0", 400, "invalid_input"),
        ("?from=41&to=40", 400, "invalid_input"),
        ("?from=1&to=101", 404, "not_found"),  # beyond the log (a lagging replica)
        ("?from=1&to=0", 400, "invalid_input"),
        ("?from=1&to=abc", 400, "invalid_input"),
        ("?from=1&to=20", 404, "not_found"),  # no checkpoint of size 20
    ],
)
def test_consistency_errors(reading: ModuleSite, query: str, status: int, code: str) -> None:
    assert_json_error(reading.client.get("/api/v1/proofs/consistency" + query), status, code)


@pytest.mark.parametrize("query", ["?limit=0", "?limit=501", "?limit=x", "?before=-1"])
def test_checkpoint_list_errors(reading: ModuleSite, query: str) -> None:
    assert_json_error(reading.client.get("/api/v1/checkpoints" + query), 400, "invalid_input")


def test_keys_lists_registrations_and_revocations(site: Site) -> None:
    log = site.log
    bob = register(log, site.admin, "bob")
    revoke(log, site.admin, bob)
    keys = site.app.test_client().get("/api/v1/keys").get_json()["keys"]
    assert [(k["name"], k["registered_seq"], k["revoked_seq"]) for k in keys] == [
        ("admin", 0, None),
        ("bob", 1, 2),
    ]
    assert keys[1]["key_id"] == bob.verifier.key_id and keys[1]["vkey"] == bob.verifier.vkey


# --- POST /entries ------------------------------------------------------------------------


def test_post_needs_a_valid_token(site: Site, token: str) -> None:
    client = site.app.test_client()
    log = site.log
    body = note_json(log, "hello", site.admin)
    before = dump(site.instance.engine)
    for headers in [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer syt_not-a-real-token"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
        {"Authorization": f"Bearer {token}x"},
    ]:
        response = post(client, body, None, headers=headers)
        assert_json_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert dump(site.instance.engine) == before
    revoke_token(site.instance.engine, "t1")
    before = dump(site.instance.engine)
    assert_json_error(post(client, body, token), 401, "unauthorized")
    assert dump(site.instance.engine) == before
    # the same statement is accepted with a live token: the 401s were about the token only
    assert post(client, body, create_token(site.instance.engine, "t2")).status_code == 201


def test_post_one_statement(site: Site, token: str) -> None:
    client = site.app.test_client()
    log = site.log
    verifier = served_verifier(client)
    body = note_json(log, "你好 hello", site.admin)
    response = post(client, body, token)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    [entry] = created["entries"]
    assert entry["seq"] == 1
    assert re.fullmatch(r"[0-9a-f]{64}", entry["leaf_hash"])
    assert checked(created["checkpoint"], verifier).size == 2
    read = client.get(f"/api/v1/entries/{entry['seq']}").get_json()
    assert read["leaf_hash"] == entry["leaf_hash"]
    assert read["entry"]["statement"] == body["statement"]
    assert read["entry"]["signatures"] == body["signatures"]
    check_entry_response(read, verifier, 1, 2)
    # A charset parameter on the media type is fine.
    again = note_json(log, "second", site.admin)
    response = post(client, again, token, content_type="application/json; charset=utf-8")
    assert response.status_code == 201
    check_ledger(site.instance.engine)


def test_post_a_list_of_statements(site: Site, token: str) -> None:
    client = site.app.test_client()
    log = site.log
    bob = register(log, site.admin, "bob")
    items = [note_json(log, f"n{i}", bob if i % 2 else site.admin) for i in range(5)]
    response = post(client, {"statements": items}, token)
    assert response.status_code == 201, response.get_json()
    entries = response.get_json()["entries"]
    assert [e["seq"] for e in entries] == [2, 3, 4, 5, 6]
    for entry, item in zip(entries, items, strict=True):
        read = client.get(f"/api/v1/entries/{entry['seq']}").get_json()
        assert read["entry"]["statement"] == item["statement"]
        assert read["leaf_hash"] == entry["leaf_hash"]
    check_ledger(site.instance.engine)


def _bad_signature(log: Log, signer: Signer) -> dict[str, Any]:
    body = note_json(log, "forged", signer)
    sig = bytearray(b64(body["signatures"][0]["sig"]))
    sig[10] ^= 0x01
    body["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return body


def _other_message(log: Log, signer: Signer) -> dict[str, Any]:
    """A valid signature, moved onto a different statement."""
    body = note_json(log, "original", signer)
    other = note_json(log, "changed", signer)
    other["signatures"] = body["signatures"]
    return other


def _case(name: str, admin: Signer, log: Log, bob: Signer, carol: Signer) -> tuple[Any, int, str]:
    """Build one refused request: (body, status, error code)."""
    if name == "malformed_json":
        return b'{"statement": {', 400, "invalid_input"
    if name == "not_utf8":
        return b'{"statement": "\xff"}', 400, "invalid_input"
    if name == "float":
        raw = json.dumps(note_json(log, "x", admin)).replace('"text": "x"', '"text": "x", "n": 1.5')
        return raw, 400, "invalid_input"
    if name == "exponent":
        raw = json.dumps(note_json(log, "x", admin)).replace('"text": "x"', '"text": "x", "n": 1e3')
        return raw, 400, "invalid_input"
    if name == "duplicate_keys":
        raw = json.dumps(note_json(log, "x", admin))
        return raw[:-1] + ', "signatures": []}', 400, "invalid_input"
    if name == "duplicate_keys_nested":
        raw = json.dumps(note_json(log, "x", admin)).replace(
            '"text": "x"', '"text": "x", "text": "y"'
        )
        return raw, 400, "invalid_input"
    if name == "oversize_entry":
        # the body is accepted JSON; the entry it makes is > 65,535 bytes once encoded
        return note_json(log, "长" * (MAX_LEAF_SIZE // 3 + 10), admin), 400, "invalid_entry"
    if name == "other_origin":
        item = statement(log, "note", {"text": "x"}, admin, origin="other.example/log")
        return item.to_json(), 422, "rule_violation"
    if name == "unknown_key":
        return note_json(log, "x", new_signer("mallory")), 422, "rule_violation"
    if name == "revoked_key":
        return note_json(log, "x", carol), 422, "rule_violation"
    if name == "bad_signature":
        return _bad_signature(log, bob), 422, "verification_failed"
    if name == "signature_of_another_statement":
        return _other_message(log, admin), 422, "verification_failed"
    if name == "unknown_kind":
        return statement(log, "bogus.kind", {}, admin).to_json(), 400, "invalid_entry"
    if name == "not_an_object":
        return [note_json(log, "x", admin)], 400, "invalid_entry"
    if name == "missing_signatures":
        return {"statement": note_json(log, "x", admin)["statement"]}, 400, "invalid_entry"
    if name == "empty_list":
        return {"statements": []}, 400, "invalid_input"
    if name == "statements_not_a_list":
        return {"statements": note_json(log, "x", admin)}, 400, "invalid_input"
    if name == "one_bad_in_a_list":
        items = [note_json(log, "a", admin), _bad_signature(log, bob), note_json(log, "c", bob)]
        return {"statements": items}, 422, "verification_failed"
    if name == "one_unknown_key_in_a_list":
        items = [note_json(log, "a", admin), note_json(log, "b", new_signer("eve"))]
        return {"statements": items}, 422, "rule_violation"
    if name == "same_statement_twice_in_a_list":
        item = note_json(log, "twice", admin)
        return {"statements": [item, item]}, 409, "conflict"
    if name == "too_many_statements":
        item = note_json(log, "x", admin)
        return {"statements": [item] * (MAX_BATCH + 1)}, 400, "invalid_input"
    raise AssertionError(name)


BAD_INPUTS = [
    "malformed_json",
    "not_utf8",
    "float",
    "exponent",
    "duplicate_keys",
    "duplicate_keys_nested",
    "oversize_entry",
    "other_origin",
    "unknown_key",
    "revoked_key",
    "bad_signature",
    "signature_of_another_statement",
    "unknown_kind",
    "not_an_object",
    "missing_signatures",
    "empty_list",
    "statements_not_a_list",
    "one_bad_in_a_list",
    "one_unknown_key_in_a_list",
    "same_statement_twice_in_a_list",
    "too_many_statements",
]


# What the message must say, where it has something particular to say.
MESSAGES = {
    "malformed_json": "invalid JSON",
    "not_utf8": "UTF-8",
    "float": "1.5",
    "duplicate_keys": "duplicate",
    "duplicate_keys_nested": "duplicate",
    "oversize_entry": "65535",
    "other_origin": "other.example/log",
    "unknown_key": "unknown key mallory",
    "revoked_key": "revoked",
    "bad_signature": "does not verify",
    "unknown_kind": "bogus.kind",
    "one_bad_in_a_list": "statement 2",
    "one_unknown_key_in_a_list": "statement 2.*eve",
    "same_statement_twice_in_a_list": "statement 2",
    "too_many_statements": str(MAX_BATCH),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_refused_posts_change_nothing(writing: Writing, name: str) -> None:
    site, token, bob = writing.site, writing.token, writing.bob
    log = site.log
    body, status, code = _case(name, site.admin, log, bob, writing.carol)
    engine = site.instance.engine
    before = dump(engine)
    client = site.client
    response = post(client, body, token)
    error = assert_json_error(response, status, code)
    assert re.search(MESSAGES.get(name, "."), error["message"]), error["message"]
    assert response.headers["Cache-Control"] == "no-store"
    assert dump(engine) == before
    # ... and the log still takes a good statement afterwards.
    assert post(client, note_json(log, "after " + name, bob), token).status_code == 201
    check_ledger(engine)


def test_replay_is_409_and_changes_nothing(site: Site, token: str) -> None:
    client = site.app.test_client()
    body = note_json(site.log, "once", site.admin)
    assert post(client, body, token).status_code == 201
    before = dump(site.instance.engine)
    assert_json_error(post(client, body, token), 409, "conflict")
    # also inside a list next to a fresh statement: none written
    fresh = note_json(site.log, "fresh", site.admin)
    assert_json_error(post(client, {"statements": [fresh, body]}, token), 409, "conflict")
    assert dump(site.instance.engine) == before
    check_ledger(site.instance.engine)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_changes_nothing(site: Site, token: str, content_type: str) -> None:
    before = dump(site.instance.engine)
    body = json.dumps(note_json(site.log, "x", site.admin))
    response = post(site.app.test_client(), body, token, content_type=content_type)
    # 415 would be the most precise status; the API documents 400 invalid_input.
    error = assert_json_error(response, response.status_code)
    assert response.status_code in (400, 415)
    assert error["code"] in ("invalid_input", "unsupported_media_type")
    assert dump(site.instance.engine) == before


def test_body_over_max_content_length_is_413_json(site: Site, token: str) -> None:
    before = dump(site.instance.engine)
    limit = site.app.config["MAX_CONTENT_LENGTH"]
    assert limit == 8 * 1024 * 1024
    body = b'{"statements": ["' + b"x" * limit + b'"]}'
    response = post(site.app.test_client(), body, token)
    assert_json_error(response, 413)
    assert dump(site.instance.engine) == before


# --- OpenAPI ------------------------------------------------------------------------------


def _resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = OPENAPI
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _api_rules(site: Site) -> list[Rule]:
    return [r for r in site.app.url_map.iter_rules() if r.endpoint.startswith("api.")]


def _template(rule: Rule) -> str:
    path = rule.rule.removeprefix("/api/v1")
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", path)


def test_openapi_document_is_served_and_well_formed(site: Site) -> None:
    response = site.app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    doc = response.get_json()
    assert doc == json.loads(json.dumps(OPENAPI))
    try:
        from openapi_spec_validator import validate  # type: ignore[import-not-found]
    except ImportError:
        validate = None
    if validate is not None:
        validate(doc)
    assert re.fullmatch(r"3\.[01]\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    for ref in _refs(doc):
        assert _resolve(ref) is not None, ref
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        for method, operation in item.items():
            assert method in {"get", "post", "put", "delete", "patch"}
            assert operation["responses"], (path, method)
            for status in operation["responses"]:
                assert re.fullmatch(r"[1-5]\d\d", status), (path, status)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (path, declared)


def test_openapi_documents_every_route_the_blueprint_serves(site: Site) -> None:
    served = {
        (_template(rule), method.lower())
        for rule in _api_rules(site)
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    # The document does not describe itself.
    assert served - {("/openapi.json", "get")} <= documented, served - documented
    assert documented <= served, documented - served


def test_every_status_the_api_answers_is_documented(site: Site, token: str) -> None:
    """Drive each operation into each outcome it has; the status must be in the document."""
    log = site.log
    add_notes(log, site.admin, 9)
    client = site.app.test_client()
    note = note_json(log, "documented", site.admin)
    calls: list[tuple[str, str, Any]] = [
        ("/entries/{seq}", "get", client.get("/api/v1/entries/1")),
        ("/entries/{seq}", "get", client.get("/api/v1/entries/1?size=x")),
        ("/entries/{seq}", "get", client.get("/api/v1/entries/99")),
        ("/entries/{seq}", "get", client.get("/api/v1/entries/1?size=5")),
        ("/proofs/consistency", "get", client.get("/api/v1/proofs/consistency?from=1")),
        ("/proofs/consistency", "get", client.get("/api/v1/proofs/consistency")),
        ("/proofs/consistency", "get", client.get("/api/v1/proofs/consistency?from=1&to=5")),
        ("/checkpoints", "get", client.get("/api/v1/checkpoints")),
        ("/checkpoints", "get", client.get("/api/v1/checkpoints?limit=0")),
        ("/keys", "get", client.get("/api/v1/keys")),
        ("/entries", "post", post(client, note, token)),
        ("/entries", "post", post(client, note, token)),  # replay
        ("/entries", "post", post(client, note, None)),
        ("/entries", "post", post(client, b"{", token)),
        ("/entries", "post", post(client, note_json(log, "x", new_signer("z")), token)),
        ("/entries", "post", post(client, b"[" + b" " * (9 << 20) + b"]", token)),
        ("/entries", "post", post(client, "{}", token, content_type="text/plain")),
    ]
    seen = set()
    for path, method, response in calls:
        documented = OPENAPI["paths"][path][method]["responses"]
        status = str(response.status_code)
        assert status in documented, (path, method, status)
        seen.add((path, status))
        if response.status_code >= 400:
            assert_json_error(response, response.status_code)
            assert (
                _resolve(documented[status]["$ref"]) == OPENAPI["components"]["responses"]["Error"]
            )
    assert {s for _, s in seen} >= {"200", "201", "400", "401", "404", "409", "413", "422"}


# --- every error under /api/v1 is JSON ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/api/v1/entries/100", 404),
        ("GET", "/api/v1/proofs/consistency?from=a", 400),
        ("POST", "/api/v1/entries", 401),
        ("GET", "/api/v1/entries/abc", 404),
        ("GET", "/api/v1/entries/-1", 404),
        ("GET", "/api/v1/nope", 404),
        ("GET", "/api/v1/", 404),
        ("GET", "/api/v1/proofs", 404),
        ("POST", "/api/v1/checkpoints", 405),
        ("DELETE", "/api/v1/entries/1", 405),
        ("PUT", "/api/v1/entries", 405),
        ("GET", "/api/v1/entries", 405),
    ],
)
def test_every_api_error_is_json(reading: ModuleSite, method: str, url: str, status: int) -> None:
    response = reading.client.open(url, method=method)
    error = assert_json_error(response, status)
    assert error["code"] != "error"


# --- bad input found by fuzzing (tests/security, tests/fuzz): regressions ---------------------


def _raw_note(log: Log, signer: Signer, extra: str) -> bytes:
    """A valid signed note with ``extra`` spliced into its body as raw JSON text."""
    raw = json.dumps(note_json(log, "x", signer))
    return raw.replace('"text": "x"', '"text": "x", ' + extra).encode()


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("nan", "NaN"),
        ("infinity", "Infinity"),
        ("huge_integer", "range"),
        ("very_long_integer", "JSON number"),
        ("deep_arrays", "nested deeper"),
        ("deep_objects", "nested deeper"),
        ("lone_surrogate", "surrogate"),
        ("byte_order_mark", "BOM"),
        ("top_level_number", "object"),
        ("top_level_null", "object"),
        ("utf16", "UTF-8"),
        ("empty_body", "JSON"),
    ],
)
def test_json_the_parser_refuses_changes_nothing(writing: Writing, name: str, needle: str) -> None:
    site, log, bob = writing.site, writing.site.log, writing.bob
    body = {
        "nan": _raw_note(log, bob, '"n": NaN'),
        "infinity": _raw_note(log, bob, '"n": -Infinity'),
        "huge_integer": _raw_note(log, bob, '"n": 9007199254740992'),
        "very_long_integer": _raw_note(log, bob, '"n": ' + "9" * 5000),
        "deep_arrays": b"[" * 100_000 + b"]" * 100_000,
        "deep_objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "lone_surrogate": _raw_note(log, bob, '"n": "\\ud800"'),
        "byte_order_mark": b"\xef\xbb\xbf" + json.dumps(note_json(log, "x", bob)).encode(),
        "top_level_number": b"1",
        "top_level_null": b"null",
        "utf16": json.dumps(note_json(log, "x", bob)).encode("utf-16"),
        "empty_body": b"",
    }[name]
    before = dump(site.instance.engine)
    error = assert_json_error(post(site.client, body, writing.token), 400)
    assert error["code"] in ("invalid_input", "invalid_entry")
    assert needle in error["message"], error["message"]
    assert dump(site.instance.engine) == before


def test_a_body_that_is_not_json_is_415(writing: Writing) -> None:
    site = writing.site
    body = json.dumps(note_json(site.log, "x", writing.bob))
    before = dump(site.instance.engine)
    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""]:
        response = post(site.client, body, writing.token, content_type=content_type)
        error = assert_json_error(response, 415, "unsupported_media_type")
        assert "application/json" in error["message"]
    assert dump(site.instance.engine) == before


def test_routing_errors_say_what_exists(reading: ModuleSite) -> None:
    error = assert_json_error(reading.client.get("/api/v1/nope"), 404, "not_found")
    assert "/api/v1/nope" in error["message"] and "openapi.json" in error["message"]
    response = reading.client.delete("/api/v1/keys")
    error = assert_json_error(response, 405, "method_not_allowed")
    assert "DELETE" in error["message"] and "GET" in error["message"]
    assert "GET" in response.headers["Allow"]


def test_oversize_blob_is_413_json(site: Site, token: str) -> None:
    data = b"x" * (site.app.config["MAX_CONTENT_LENGTH"] + 1)
    headers = {"Authorization": f"Bearer {token}"}
    response = site.app.test_client().post("/api/v1/blobs", data=data, headers=headers)
    error = assert_json_error(response, 413, "too_large")
    assert str(site.app.config["MAX_CONTENT_LENGTH"]) in error["message"]


@pytest.mark.parametrize(
    ("query", "needle"),
    [("name=" + "x" * 300, "name"), ("media_type=a%00b", "media_type"), ("media_type=x", "")],
)
def test_blob_description_refused_before_anything_is_stored(
    site: Site, token: str, query: str, needle: str
) -> None:
    store = site.instance.settings.instance / "blobs"
    before = sorted(store.rglob("*")) if store.exists() else []
    headers = {"Authorization": f"Bearer {token}"}
    response = site.app.test_client().post(f"/api/v1/blobs?{query}", data=b"doc", headers=headers)
    error = assert_json_error(response, 400, "invalid_input")
    assert needle in error["message"] and "query parameters" in error["message"]
    assert (sorted(store.rglob("*")) if store.exists() else []) == before


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/households?limit=",
        "/api/v1/households?status=",
        "/api/v1/batches/provenance?lot=x&depth=",
        "/api/v1/projects/overdue?as_of=",
        "/api/v1/funds/anomalies?today=",
    ],
)
def test_an_empty_number_date_or_choice_is_refused(reading: ModuleSite, url: str) -> None:
    error = assert_json_error(reading.client.get(url), 400, "invalid_input")
    assert "empty" in error["message"]
    # an empty free-text filter is "not given", as the portal's forms send it
    assert reading.client.get("/api/v1/households?village=").status_code == 200


def test_an_unexpected_failure_is_a_json_500_without_internals(
    reading: ModuleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    import web.api

    def broken() -> Log:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(web.api, "reader", broken)
    monkeypatch.setitem(reading.app.config, "PROPAGATE_EXCEPTIONS", False)  # as in production
    response = reading.client.get("/api/v1/keys")
    error = assert_json_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert error["message"]


# --- the anomaly report: refused attempts only for auditors -----------------------------------


@pytest.fixture(scope="module")
def anomalies_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    from ledger.demo import load_demo
    from tests.web.portal import add_user

    with make_site(tmp_path_factory.mktemp("anomalies")) as made:
        load_demo(made.instance, households=20)
        add_user(made.instance, made.admin, "aud", "auditor", "审计局 Audit bureau")
        add_user(made.instance, made.admin, "vill", "village_approver", "新兴村村民委员会")
        yield made


REFUSAL_LISTS = ("overspend_attempts", "duplicate_payment_attempts")
ANOMALIES = "/api/v1/funds/anomalies?today=2021-01-01"


def test_anomalies_withhold_refused_attempts_unless_an_auditor_asks(
    anomalies_site: ModuleSite,
) -> None:
    from tests.web.portal import signed_in

    app = anomalies_site.app
    token = create_token(anomalies_site.instance.engine, "reader")
    auditor = signed_in(app, "aud").get(ANOMALIES)
    assert auditor.status_code == 200
    full = auditor.get_json()
    assert full["overspend_attempts"], "the demo tries an over-spend"
    assert full["overspend_attempts"][0]["body"] and full["overspend_attempts"][0]["key_ids"]
    answers = {
        "anonymous": anomalies_site.client.get(ANOMALIES),
        "token": anomalies_site.client.get(ANOMALIES, headers={"Authorization": f"Bearer {token}"}),
        "official": signed_in(app, "vill").get(ANOMALIES),
    }
    for who, response in {**answers, "auditor": auditor}.items():
        assert response.status_code == 200, who
        assert response.headers["Cache-Control"] == "private, no-store", who
        assert "Cookie" in response.headers["Vary"], who
    for who, response in answers.items():
        report = response.get_json()
        assert all(report[name] == [] for name in REFUSAL_LISTS), who
        # the findings computed from the public ledger are all there
        assert {k: v for k, v in report.items() if k not in REFUSAL_LISTS} == {
            k: v for k, v in full.items() if k not in REFUSAL_LISTS
        }, who
    body = full["overspend_attempts"][0]["body"]["id"]
    public_csv = anomalies_site.client.get(ANOMALIES + "&format=csv").get_data(as_text=True)
    assert "overdue_milestones" in public_csv
    assert "overspend_attempts" not in public_csv and body not in public_csv
    auditor_csv = signed_in(app, "aud").get(ANOMALIES + "&format=csv").get_data(as_text=True)
    assert "overspend_attempts" in auditor_csv and body in auditor_csv
    description = OPENAPI["paths"]["/funds/anomalies"]["get"]["description"]
    assert "auditor" in description and "overspend_attempts" in description


@pytest.mark.parametrize("url", ["/api/v1/households", "/api/v1/entries/1", "/api/v1/keys"])
def test_a_query_string_that_is_not_utf8_is_refused(reading: ModuleSite, url: str) -> None:
    """Raw bytes (not percent-encoded) that are not UTF-8: werkzeug's ``request.args`` raised."""
    response = reading.client.get(url, environ_overrides={"QUERY_STRING": "size=\x80\xff"})
    error = assert_json_error(response, 400, "invalid_input")
    assert "UTF-8" in error["message"]
    # percent-encoded, the same bytes are just a bad value
    assert reading.client.get(url + "?size=%80%FF").status_code in (200, 400)


@pytest.mark.parametrize("url", ["/", "/e/1", "/01/09520001000010/10/X1", "/lang/en"])
def test_pages_refuse_a_query_string_that_is_not_utf8_too(reading: ModuleSite, url: str) -> None:
    """Every page reads ``request.args`` (at least the locale selector does): a 400, not a 500."""
    response = reading.client.get(url, environ_overrides={"QUERY_STRING": "lang=\x80"})
    assert response.status_code == 400
    assert response.content_type.startswith("text/plain")
    assert "not UTF-8" in response.get_data(as_text=True)
    assert reading.client.get(url + "?lang=%80").status_code < 500
