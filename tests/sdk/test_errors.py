"""Every error row of the spec: HTTP status and Code, through the SDKs where they can
produce the condition and through hand-signed V1 requests where they cannot."""

from __future__ import annotations

import time

import pytest

from helpers import (STYLES, TENANT_A, ApiClient,
                     closed_port, expect_error, unique_name, utc_timestamp, v1_request,
                     v3_request)

COMMON_REQUIRED = ["Action", "Version", "AccessKeyId", "Signature", "SignatureMethod",
                   "SignatureVersion", "SignatureNonce", "Timestamp"]


# --- gateway (spec 3.4) ---------------------------------------------------------------


@pytest.mark.parametrize("name", COMMON_REQUIRED)
def test_missing_common_parameter(server, name):
    """A required common parameter left out → 400 MissingParameter naming it."""
    r = v1_request("ListImageDbs", drop=[name]).send(server.port)
    status, code = r.error()
    assert (status, code) == (400, "MissingParameter"), r.body
    assert name in r.json()["Message"]


def test_unknown_access_key_raw(server):
    """Unknown AccessKeyId (hand-signed) → 404 InvalidAccessKeyId.NotFound."""
    r = v1_request("ListImageDbs", key_id="AKIDnobody").send(server.port)
    assert r.error() == (404, "InvalidAccessKeyId.NotFound"), r.body


@pytest.mark.parametrize("style", STYLES)
def test_unknown_access_key_sdk(server, style):
    """Unknown AccessKeyId through each SDK → 404 InvalidAccessKeyId.NotFound."""
    c = ApiClient(style, server.port, key_id="AKIDnobody", secret="whatever")
    expect_error(c.list_image_dbs, status=404, code="InvalidAccessKeyId.NotFound")


def test_wrong_secret_raw(server):
    """A signature made with the wrong secret → 400 SignatureDoesNotMatch, and the message
    carries the server's StringToSign, identical to ours."""
    req = v1_request("ListImageDbs", secret="not-the-secret")
    r = req.send(server.port)
    assert r.error() == (400, "SignatureDoesNotMatch"), r.body
    assert r.json()["Message"].endswith(req.string_to_sign), (r.json()["Message"], req.string_to_sign)


def test_wrong_secret_tea_sdk(server):
    """Tea SDK (V3) with the wrong secret → 400 SignatureDoesNotMatch."""
    c = ApiClient("tea", server.port, secret="not-the-secret")
    expect_error(c.list_image_dbs, status=400, code="SignatureDoesNotMatch")


def test_wrong_secret_core_sdk(server):
    """Core SDK (V1) with the wrong secret: the server answers 400 SignatureDoesNotMatch
    with `...is:<StringToSign>`; the SDK compares that with its own StringToSign and, as
    they are equal, reports `InvalidAccessKeySecret` — which proves the server built the
    very same StringToSign."""
    c = ApiClient("core", server.port, secret="not-the-secret")
    expect_error(c.list_image_dbs, status=400, code="InvalidAccessKeySecret")


def test_replayed_request_is_refused(server):
    """The identical signed request sent twice: first 200, then 400 SignatureNonceUsed."""
    req = v1_request("ListImageDbs")
    first = req.send(server.port)
    assert first.status == 200, first.body
    second = req.send(server.port)
    assert second.error() == (400, "SignatureNonceUsed"), second.body
    assert first.json()["RequestId"] != second.json()["RequestId"]


def test_reused_nonce_with_new_signature_is_refused(server):
    """A fresh, correctly signed request that reuses a nonce → 400 SignatureNonceUsed."""
    nonce = f"nonce-{time.time_ns()}"
    assert v1_request("ListImageDbs", nonce=nonce).send(server.port).status == 200
    r = v1_request("ListImageDbs", nonce=nonce, timestamp=utc_timestamp(time.time() - 5)).send(server.port)
    assert r.error() == (400, "SignatureNonceUsed"), r.body


@pytest.mark.parametrize("offset_s", [-20 * 60, +20 * 60])
def test_timestamp_out_of_window(server, offset_s):
    """Timestamp 20 minutes in the past or future → 400 InvalidTimeStamp.Expired."""
    r = v1_request("ListImageDbs", timestamp=utc_timestamp(time.time() + offset_s)).send(server.port)
    assert r.error() == (400, "InvalidTimeStamp.Expired"), r.body


def test_timestamp_inside_window(server):
    """Timestamp 10 minutes in the past is still inside the 15-minute window → 200."""
    r = v1_request("ListImageDbs", timestamp=utc_timestamp(time.time() - 600)).send(server.port)
    assert r.status == 200, r.body


def test_unknown_action(server):
    """A correctly signed unknown Action → 404 InvalidAction.NotFound."""
    r = v1_request("MakeCoffee").send(server.port)
    assert r.error() == (404, "InvalidAction.NotFound"), r.body


def test_unsupported_version(server):
    """A correctly signed request with Version 2019-01-01 → 400 InvalidVersion."""
    r = v1_request("ListImageDbs", version="2019-01-01").send(server.port)
    assert r.error() == (400, "InvalidVersion"), r.body


@pytest.mark.parametrize("body", [b"Name=%ZZ", b"Name=%FF%FE"])
def test_malformed_body(server, body):
    """A form body with broken percent-encoding / invalid UTF-8 → 400
    InvalidParameter.BadRequest."""
    r = v1_request("CreateImageDb", {"Name": "x"}, raw_body=body).send(server.port)
    assert r.error() == (400, "InvalidParameter.BadRequest"), r.body


def test_bad_timestamp_format(server):
    """A Timestamp that is not `YYYY-MM-DDThh:mm:ssZ` → 400 InvalidTimeStamp.* (README:
    InvalidTimeStamp.Format)."""
    r = v1_request("ListImageDbs", timestamp="2026/01/01 10:00:00").send(server.port)
    status, code = r.error()
    assert status == 400 and code == "InvalidTimeStamp.Format", r.body


# --- the same gateway checks for V3 (Tea-style) requests ---------------------------------


def test_v3_hand_signed_request_works(server):
    """Sanity of the V3 helper: a hand-signed Tea-style request is accepted."""
    r = v3_request("ListImageDbs", port=server.port).send(server.port)
    assert r.status == 200, r.body
    _ = r.json()["Data"]["DbList"]


def test_v3_replay_is_refused(server):
    """The identical V3 request sent twice: 200, then 400 SignatureNonceUsed."""
    req = v3_request("ListImageDbs", port=server.port)
    assert req.send(server.port).status == 200
    assert req.send(server.port).error() == (400, "SignatureNonceUsed")


@pytest.mark.parametrize("offset_s", [-20 * 60, +20 * 60])
def test_v3_date_out_of_window(server, offset_s):
    """x-acs-date 20 minutes off → 400 InvalidTimeStamp.Expired."""
    r = v3_request("ListImageDbs", port=server.port,
                   date=utc_timestamp(time.time() + offset_s)).send(server.port)
    assert r.error() == (400, "InvalidTimeStamp.Expired"), r.body


def test_v3_wrong_secret(server):
    """V3 signed with the wrong secret → 400 SignatureDoesNotMatch."""
    r = v3_request("ListImageDbs", port=server.port, secret="nope").send(server.port)
    assert r.error() == (400, "SignatureDoesNotMatch"), r.body


def test_v3_body_not_matching_its_hash(server):
    """A body changed after signing (x-acs-content-sha256 no longer matches) → 400
    (README: InvalidContentSha256), and nothing is created."""
    name = unique_name("tamper")
    r = v3_request("CreateImageDb", {"Name": name}, port=server.port,
                   body_override=f"Name={name}x".encode()).send(server.port)
    assert r.error() == (400, "InvalidContentSha256"), r.body
    assert name not in ApiClient("core", server.port).db_names()
    assert name + "x" not in ApiClient("core", server.port).db_names()


def test_v3_unknown_action_and_version(server):
    """V3 with an unknown x-acs-action → 404 InvalidAction.NotFound; with an unsupported
    x-acs-version → 400 InvalidVersion."""
    r = v3_request("MakeCoffee", port=server.port).send(server.port)
    assert r.error() == (404, "InvalidAction.NotFound"), r.body
    r = v3_request("ListImageDbs", port=server.port, version="2019-01-01").send(server.port)
    assert r.error() == (400, "InvalidVersion"), r.body


# --- business parameters (spec 4, 5) ----------------------------------------------------


@pytest.fixture(scope="module")
def err_db(server):
    """An empty database of tenant A; every failed call must leave it empty."""
    c = ApiClient("core", server.port, TENANT_A)
    db = unique_name("err")
    c.create_image_db(db)
    yield db
    assert c.list_images(db)["Data"]["TotalCount"] == 0, "a failed AddImage left a record"
    c.delete_image_db(db)


@pytest.mark.parametrize("entity_id", ["", "UPPER", "has-dash", "with space", "x" * 65, "实体"])
def test_bad_entity_id(client, err_db, image_server, images, entity_id):
    """EntityId must be lower-case letters, digits, `_`, length 1-64 → else 400
    InvalidParameter."""
    expect_error(client.add_image, err_db, entity_id, image_server.url(images.good[0]),
                 status=400, code="InvalidParameter")


def test_extra_data_length(client, err_db, image_server, images):
    """ExtraData of 513 characters → 400 InvalidParameter; 512 (ASCII or CJK) is
    accepted."""
    url = image_server.url(images.good[1])
    e = expect_error(client.add_image, err_db, "e1", url, "x" * 513,
                     status=400, code="InvalidParameter")
    assert "ExtraData" in e.message
    expect_error(client.add_image, err_db, "e1", url, "图" * 513, status=400, code="InvalidParameter")
    for extra in ["y" * 512, "图" * 512]:  # the limit counts characters
        client.add(err_db, "e512", url, extra)
        assert client.list_all(err_db)[0]["ExtraData"] == extra
        client.delete_image(err_db, "e512")


def test_search_limit_is_required(core, err_db, image_server, images):
    """SearchImage without Limit (required) → 400 InvalidParameter naming Limit."""
    e = expect_error(core.search_image, err_db, image_server.url(images.good[0]), None,
                     status=400, code="InvalidParameter")
    assert "Limit" in e.message


@pytest.mark.parametrize("limit", [0, 1001, -1])
def test_search_limit_out_of_range(client, err_db, image_server, images, limit):
    """SearchImage Limit outside 1-1000 → 400 InvalidParameter."""
    e = expect_error(client.search_image, err_db, image_server.url(images.good[0]), limit,
                     status=400, code="InvalidParameter")
    assert "Limit" in e.message


def test_unknown_db_for_image_actions(client, image_server, images):
    """AddImage / SearchImage / ListImages / DeleteImage on a database that does not exist
    → 400 InvalidParameter."""
    db = unique_name("ghost")
    url = image_server.url(images.good[0])
    expect_error(client.add_image, db, "e", url, status=400, code="InvalidParameter")
    expect_error(client.search_image, db, url, 5, status=400, code="InvalidParameter")
    expect_error(client.list_images, db, status=400, code="InvalidParameter")
    expect_error(client.delete_image, db, "e", status=400, code="InvalidParameter")
    assert db not in client.db_names()


# --- images (spec 4 limits, 5 codes) ------------------------------------------------------


def _call(client, action, db, url):
    if action == "add":
        return client.add_image(db, "img_err", url, "")
    return client.search_image(db, url, 5)


@pytest.mark.parametrize("action", ["add", "search"])
def test_image_download_errors(client, err_db, image_server, action):
    """An ImageUrl answering 404, a closed port, or a chain of 10 redirects → 400
    InvalidImage.Download."""
    for url in [image_server.url("does_not_exist.jpg"),
                f"http://127.0.0.1:{closed_port()}/img/x.jpg",
                image_server.redirect_url(10, "good_000.jpg")]:
        e = expect_error(_call, client, action, err_db, url, status=400, code="InvalidImage.Download")
        assert "ImageUrl" in e.message


@pytest.mark.parametrize("action", ["add", "search"])
@pytest.mark.parametrize("which", ["gif", "truncated", "text_as_jpg"])
def test_image_format_errors(client, err_db, image_server, images, action, which):
    """A GIF, a truncated JPEG, or text named .jpg → 400 InvalidImage.Format."""
    url = image_server.url(getattr(images, which))
    expect_error(_call, client, action, err_db, url, status=400, code="InvalidImage.Format")


@pytest.mark.parametrize("action", ["add", "search"])
@pytest.mark.parametrize("which", ["tiny_png", "too_wide", "side_128", "side_1024"])
def test_image_resolution_errors(client, err_db, image_server, images, action, which):
    """100×100, 1100×300, and the exact boundaries 128 and 1024 px → 400
    InvalidImage.Resolution (each side must be strictly between 128 and 1024)."""
    url = image_server.url(getattr(images, which))
    expect_error(_call, client, action, err_db, url, status=400, code="InvalidImage.Resolution")


def test_image_size_errors(client, err_db, image_server, images):
    """AddImage refuses a valid 2-3 MB JPEG (limit 2 MB) and SearchImage a >3 MB one (limit
    3 MB) with 400 InvalidImage.Size; SearchImage accepts the 2-3 MB one."""
    mid = image_server.url(images.between_2_and_3mb)
    big = image_server.url(images.over_3mb)
    expect_error(client.add_image, err_db, "big", mid, status=400, code="InvalidImage.Size")
    expect_error(client.add_image, err_db, "big", big, status=400, code="InvalidImage.Size")
    expect_error(client.search_image, err_db, big, 5, status=400, code="InvalidImage.Size")
    assert client.search_image(err_db, mid, 5)["Data"].get("MatchList") in (None, [])


def test_image_size_enforced_without_content_length(client, err_db, image_server, images):
    """The size caps also hold when the image server sends no Content-Length (chunked):
    2-3 MB → AddImage 400 InvalidImage.Size, SearchImage fine; >3 MB → SearchImage 400
    InvalidImage.Size; a normal chunked image is added and found."""
    mid = image_server.chunked_url(images.between_2_and_3mb)
    big = image_server.chunked_url(images.over_3mb)
    expect_error(client.add_image, err_db, "big", mid, status=400, code="InvalidImage.Size")
    expect_error(client.search_image, err_db, big, 5, status=400, code="InvalidImage.Size")
    assert client.search_image(err_db, mid, 5)["Data"].get("MatchList") in (None, [])
    data_id = client.add(err_db, "chunked", image_server.chunked_url(images.good[6]))
    top = client.matches(err_db, image_server.url(images.good[6]), limit=1)[0]
    assert top["DataId"] == data_id and top["Score"] == 10.0
    client.delete_image(err_db, "chunked")


@pytest.mark.parametrize("action", ["add", "search"])
def test_non_ascii_image_url(client, err_db, image_server, action):
    """An ImageUrl with non-ASCII characters → 400 InvalidParameter, not fetched."""
    path = "/img/图片.jpg"
    url = f"http://127.0.0.1:{image_server.port}{path}"
    expect_error(_call, client, action, err_db, url, status=400, code="InvalidParameter")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x.jpg", "not a url", "file:///etc/passwd"])
def test_bad_image_url_scheme(client, err_db, url):
    """ImageUrl must be an http(s) URL → else 400 InvalidParameter."""
    expect_error(client.add_image, err_db, "e", url, status=400, code="InvalidParameter")


# --- RequestId ------------------------------------------------------------------------------


def test_every_response_has_a_unique_request_id(server, err_db, image_server, images):
    """Successes and errors, JSON and XML, both SDKs and raw requests: each answer carries
    a RequestId and no two are equal."""
    ids = []
    for style in STYLES:
        c = ApiClient(style, server.port, TENANT_A)
        for _ in range(5):
            ids.append(c.list_image_dbs()["RequestId"])
            ids.append(c.list_images(err_db)["RequestId"])
            e = expect_error(c.delete_image_db, unique_name("nope"),
                             status=400, code="InvalidParameter")
            ids.append(e.request_id)
    for _ in range(5):
        ids.append(v1_request("ListImageDbs", key_id="AKIDnobody").send(server.port).json()["RequestId"])
        ids.append(v1_request("ListImageDbs", fmt="XML").send(server.port).xml().findtext("RequestId"))
    assert all(ids) and len(ids) == 2 * 5 * 3 + 5 * 2
    assert len(set(ids)) == len(ids), ids
