"""Files in and out: path traversal in every file-serving route, oversize uploads, and
evidence whose declared type lies.

* ``/api/v1/blobs/<digest>`` serves only a 64-hex-digit name from the store: ``..``,
  encoded dots and slashes, backslashes, absolute paths, NUL, upper case and wrong
  lengths are refused with a JSON error and never read a file; so are ``../`` in log
  tiles and static files.
* An upload over the request limit (the evidence forms of the producer and officials'
  portals, the inspection report, the API's blob POST) is refused with 413 and an
  explanation, and nothing is stored: not an entry, not a draft, not a blob file.
* A document uploaded as HTML or SVG — whatever type it claims — is never served as a
  page or an image from the site's origin: an attachment, ``application/octet-stream``,
  ``nosniff``, and a sandboxing Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from urllib.parse import quote, urlsplit

import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from ledger.tokens import create_token
from tests.security.sitekit import LOT_URL, Hostile, snapshot
from tests.web.portal import csrf_token

SECRET = "root:x:0:0"  # what /etc/passwd would show
_tokens = itertools.count()


def _bearer(h: Hostile) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(h.instance.engine, f'up-{next(_tokens)}')}"}


def _digest(h: Hostile) -> str:
    return h.digests[0]


TRAVERSALS = [
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "..\\..\\etc\\passwd",
    "..%5c..%5cetc%5cpasswd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "..",
    "%2e%2e",
    "sha256/../../../etc/passwd",
]


def _refused(response: object, where: str) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    body = response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert status in (400, 404, 405), (where, status)
    assert SECRET not in body and "import" not in body, where


@pytest.mark.parametrize("name", TRAVERSALS)
def test_blob_downloads_refuse_paths(hostile: Hostile, name: str) -> None:
    client = hostile.site.app.test_client()
    response = client.get(f"/api/v1/blobs/{name}")
    _refused(response, name)
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] in ("invalid_input", "not_found")


def test_blob_names_are_exactly_64_lower_case_hex_digits(hostile: Hostile) -> None:
    client = hostile.site.app.test_client()
    good = _digest(hostile)
    assert client.get(f"/api/v1/blobs/{good}").status_code == 200
    for bad in [
        good.upper(),
        good[:-1],
        good + "0",
        good[:-1] + "g",
        good + "%00",
        good[:32] + "%00" + good[33:],
        good + "/",
        good + "%2f..",
        good + ".bin",
        " " + good,
        "",
    ]:
        response = client.get(f"/api/v1/blobs/{bad}")
        assert response.status_code in (400, 404, 308), (bad, response.status_code)
        if response.status_code == 308:  # werkzeug's redirect of a trailing slash
            assert response.headers["Location"].endswith(f"/api/v1/blobs/{good}")
        else:
            assert response.get_json()["error"]["code"] in ("invalid_input", "not_found")


@pytest.mark.parametrize("name", TRAVERSALS)
def test_tiles_and_static_files_refuse_paths(hostile: Hostile, name: str) -> None:
    client = hostile.site.app.test_client()
    for prefix in ["/log/tile/", "/log/tile/0/", "/log/tile/entries/", "/static/", "/b/"]:
        response = client.get(prefix + name)
        body = response.get_data(as_text=True)
        response.close()
        if prefix == "/b/":  # a lot code may hold dots and slashes: no such lot
            assert response.status_code in (400, 404) and SECRET not in body
            continue
        if response.status_code == 308:  # werkzeug merges "//": the path stays under prefix
            location = urlsplit(response.headers["Location"]).path
            assert location.startswith(prefix.rstrip("/")), location
            response = client.get(location)
            response.close()
        _refused(response, prefix + name)
    for name_ in [
        "../__init__.py",
        "%2e%2e/__init__.py",
        "..%2f__init__.py",
        "../../pyproject.toml",
    ]:
        response = client.get("/static/" + name_)
        response.close()
        assert response.status_code == 404, name_


# --- oversize uploads -----------------------------------------------------------------------------


def _too_big(h: Hostile) -> bytes:
    return b"%PDF-1.4\n" + b"0" * int(h.site.app.config["MAX_CONTENT_LENGTH"])


def _forms(h: Hostile) -> list[tuple[str, str, dict[str, object]]]:
    """(user, path, fields) of every form that takes a file, the file field left out."""
    lot = f"?lot={quote(LOT_URL)}"
    return [
        ("prod", f"/producer/recall{lot}", {"review": "1", "reason": "too big", "evidence": None}),
        ("prod", f"/producer/event{lot}", {"batch": f"|{LOT_URL}", "inspection_report": None}),
        ("prod", "/producer/batches/new", {"lot": "BIG-1", "inspections-0-report": None}),
        (
            "fin",
            "/officials/drafts/new",
            {"allocation": "X-ALLOC-1", "amount": "1", "period": "2019", "evidence": None},
        ),
        ("aud", "/audit/consistency", {"upload": None}),
    ]


def test_oversize_uploads_are_refused_and_store_nothing(hostile: Hostile) -> None:
    big = _too_big(hostile)
    clients = {user: hostile.client(user) for user in ("prod", "fin", "aud")}
    bearer = _bearer(hostile)
    before = snapshot(hostile.instance)
    for user, path, fields in _forms(hostile):
        client = clients[user]
        data = {
            name: FileStorage(io.BytesIO(big), "big.pdf", content_type="application/pdf")
            if value is None
            else value
            for name, value in fields.items()
        }
        data["csrf_token"] = csrf_token(client, path)
        # Encoded in memory (the test client would spool a body this big to a temporary
        # file that it never closes when the app refuses to read it).
        boundary, body = encode_multipart(data)
        response = client.post(
            path, data=body, content_type=f"multipart/form-data; boundary={boundary}"
        )
        assert response.status_code == 413, (path, response.status_code)
        page = response.get_data(as_text=True)
        assert "8 MiB" in page or "8 MB" in page, (path, page[:500])
        assert response.mimetype == "text/html"
    response = hostile.site.app.test_client().post(
        "/api/v1/blobs?name=big.pdf&media_type=application/pdf",
        data=big,
        headers=bearer,
        content_type="application/pdf",
    )
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_large" and error["message"]
    assert snapshot(hostile.instance) == before


# --- what a download is served as ------------------------------------------------------------------

HOSTILE_FILES = [
    (b"<html><body><script>alert(document.cookie)</script></body></html>", "text/html"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "image/svg+xml"),
    (b"<html><script>alert(2)</script></html>", "image/png"),  # a lie
    (b"<?xml version='1.0'?><x:script xmlns:x='http://www.w3.org/1999/xhtml'/>", "text/xml"),
]


def _served_inert(client: FlaskClient, digest: str) -> None:
    response = client.get(f"/api/v1/blobs/{digest}")
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{digest}.bin"'
    csp = response.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp, csp


@pytest.mark.parametrize(("data", "media_type"), HOSTILE_FILES, ids=["html", "svg", "lie", "xml"])
def test_uploaded_markup_is_served_as_an_inert_attachment(
    hostile: Hostile, data: bytes, media_type: str
) -> None:
    client = hostile.site.app.test_client()
    posted = client.post(
        f"/api/v1/blobs?name=x.html&media_type={quote(media_type)}",
        data=data,
        headers=_bearer(hostile),
        content_type=media_type,
    )
    assert posted.status_code == 201, posted.get_json()
    digest = posted.get_json()["sha256"]
    assert digest == hashlib.sha256(data).hexdigest()
    _served_inert(client, digest)


def test_evidence_uploaded_through_the_portal_as_html_is_inert(hostile: Hostile) -> None:
    """The recall's evidence in the hostile site was sent as text/html with a markup name."""
    _served_inert(hostile.site.app.test_client(), _digest(hostile))
    recall = hostile.instance.reader().entry(hostile.seqs["recall"])
    assert recall.body["evidence"][0]["media_type"] == "text/html"  # recorded as declared
