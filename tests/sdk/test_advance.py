"""The official Tea SDK's upload calls, unchanged (spec §6): `add_image_advance` and
`search_image_advance` send a local file by asking `AuthorizeFileUpload` (openplatform
2019-12-19, at the fixed host openplatform.aliyuncs.com) for a signed upload policy,
POSTing the file as an OSS form to http://{Bucket}.{Endpoint}/, then calling the action
with that URL. The server plays all three parts:

- as the client's HTTP proxy (RuntimeOptions(http_proxy=...) or the HTTP_PROXY variable):
  absolute-form requests, routed by Host;
- reached directly, as a hosts/DNS entry would make it (the Host header names the bucket).

Refusals (forged, expired, another tenant's, oversized, wrong key) answer with OSS's XML
error codes, which the SDK reads, and change nothing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time

import pytest
import requests
from PIL import Image

from alibabacloud_imgsearch20200320 import models as m
from alibabacloud_imgsearch20200320.client import Client
from alibabacloud_openplatform20191219 import models as op
from alibabacloud_openplatform20191219.client import Client as OpenPlatformClient
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_util.models import RuntimeOptions
from Tea.exceptions import TeaException

from helpers import TENANT_A, TENANT_B, ApiClient, ServerProcess, unique_name

BUCKET_HOST = "uploads.imgsearch.internal"  # the server's defaults: --upload-bucket/-endpoint


def config(port, tenant=TENANT_A, endpoint=None) -> Config:
    return Config(access_key_id=tenant.key_id, access_key_secret=tenant.secret,
                  endpoint=endpoint or f"127.0.0.1:{port}", protocol="http",
                  read_timeout=120_000, connect_timeout=5_000)


def via_proxy(port) -> RuntimeOptions:
    return RuntimeOptions(http_proxy=f"http://127.0.0.1:{port}")


def add_advance(client, runtime, db, entity, path):
    with open(path, "rb") as f:
        return client.add_image_advance(m.AddImageAdvanceRequest(
            db_name=db, entity_id=entity, image_url_object=f), runtime).body.to_map()


def search_advance(client, runtime, db, path, limit=5):
    with open(path, "rb") as f:
        return client.search_image_advance(m.SearchImageAdvanceRequest(
            db_name=db, image_url_object=f, limit=limit), runtime).body.to_map()


def authorize(port, tenant=TENANT_A) -> dict:
    """AuthorizeFileUpload through the SDK's own openplatform client, reached directly."""
    c = OpenPlatformClient(config(port, tenant))
    return c.authorize_file_upload_with_options(op.AuthorizeFileUploadRequest(
        product="imgsearch", region_id="cn-shanghai"), RuntimeOptions()).body.to_map()


def post_form(port, auth: dict, data: bytes, **override):
    """The OSS PostObject form the SDK sends, sent straight to the server with the bucket's
    Host (as a hosts/DNS entry would route it); `override` replaces form fields."""
    fields = {"OSSAccessKeyId": auth["AccessKeyId"], "policy": auth["EncodedPolicy"],
              "Signature": auth["Signature"], "key": auth["ObjectKey"],
              "success_action_status": "201", **override}
    host = f"{auth['Bucket']}.{auth['Endpoint']}"
    return requests.post(f"http://127.0.0.1:{port}/", headers={"Host": host},
                         data=fields, files={"file": ("x", data)}, timeout=30)


def oss_code(resp) -> str:
    assert resp.headers["content-type"].startswith("application/xml"), resp.text
    return resp.text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def object_url(auth: dict) -> str:
    return f"http://{auth['Bucket']}.{auth['Endpoint']}/{auth['ObjectKey']}"


def test_add_and_search_advance_through_the_server_as_proxy(server, images):
    client = Client(config(server.port))
    api = ApiClient("tea", server.port, TENANT_A)
    db = unique_name("advance")
    api.create_image_db(db)
    try:
        rt = via_proxy(server.port)
        for i, name in enumerate(images.good[:3]):
            data = add_advance(client, rt, db, f"item{i}", images.path(name))["Data"]
            assert data["DataId"]
        found = search_advance(client, rt, db, images.path(images.good[1]))
        first = found["Data"]["MatchList"][0]
        assert first["EntityId"] == "item1" and first["Score"] == pytest.approx(10, abs=1e-3), found
        # The object's URL dies with it: the match links its thumbnail instead.
        assert first["ImageUrl"].startswith(f"http://127.0.0.1:{server.port}/images/"), first
        thumb = requests.get(first["ImageUrl"], timeout=10)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        listed = {r["EntityId"]: r for r in api.list_all(db)}
        assert sorted(listed) == ["item0", "item1", "item2"]
        assert all(r.get("ImageUrl", "") == "" for r in listed.values()), listed
    finally:
        api.delete_image_db(db)


def test_advance_through_the_http_proxy_variable(server, images, monkeypatch):
    """An unchanged program: only HTTP_PROXY set in its environment."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    client = Client(config(server.port))
    api = ApiClient("tea", server.port, TENANT_A)
    db = unique_name("advenv")
    api.create_image_db(db)
    try:
        add_advance(client, RuntimeOptions(), db, "env", images.path(images.good[4]))
        found = search_advance(client, RuntimeOptions(), db, images.path(images.good[4]))
        assert found["Data"]["MatchList"][0]["EntityId"] == "env", found
    finally:
        monkeypatch.delenv("HTTP_PROXY")
        api.delete_image_db(db)


def test_the_upload_flow_by_host_and_its_refusals(server, images):
    """Each leg reached directly (as with a hosts/DNS entry): AuthorizeFileUpload through
    the SDK's openplatform client, the form with the bucket's Host, AddImage naming it."""
    api = ApiClient("tea", server.port, TENANT_A)
    api_b = ApiClient("tea", server.port, TENANT_B)
    db = unique_name("advhost")
    api.create_image_db(db)
    try:
        auth = authorize(server.port)
        assert auth["AccessKeyId"] == TENANT_A.key_id and auth["Bucket"] == "uploads"
        assert auth["Endpoint"] == "imgsearch.internal" and auth["UseAccelerate"] is False
        policy = json.loads(base64.b64decode(auth["EncodedPolicy"]))
        assert ["content-length-range", 1, 3 * 1024 * 1024] in policy["conditions"], policy
        photo = images.path(images.good[5]).read_bytes()

        # Refused forms, each answered in OSS's XML with its code; nothing is stored.
        doc = json.loads(base64.b64decode(auth["EncodedPolicy"]))
        doc["conditions"][2][2] = 100 * 1024 * 1024  # a bigger size cap, signature kept
        forged = base64.b64encode(json.dumps(doc).encode()).decode()
        rows = [
            (dict(policy=forged), photo, 403, "SignatureDoesNotMatch"),
            (dict(Signature=base64.b64encode(b"x" * 32).decode()), photo, 403,
             "SignatureDoesNotMatch"),
            (dict(key="upload/" + "0" * 32), photo, 403, "AccessDenied"),
            (dict(OSSAccessKeyId=TENANT_B.key_id), photo, 403, "AccessDenied"),
            ({}, b"", 400, "InvalidArgument"),
            ({}, os.urandom(3 * 1024 * 1024 + 1), 400, "EntityTooLarge"),
        ]
        for override, data, status, code in rows:
            r = post_form(server.port, auth, data, **override)
            assert (r.status_code, oss_code(r)) == (status, code), (override, r.text)
        # Nothing was stored under the key: AddImage naming it is refused.
        with pytest.raises(Exception) as e:
            api.add(db, "early", object_url(auth))
        assert (e.value.status, e.value.code) == (400, "InvalidImage.Download"), e.value
        assert "not available" in str(e.value)

        # The genuine form: 201 and OSS's PostResponse.
        r = post_form(server.port, auth, photo)
        assert r.status_code == 201, r.text
        assert f"<Key>{auth['ObjectKey']}</Key>" in r.text and "<ETag>" in r.text, r.text
        # Another tenant cannot use it (as if it did not exist).
        with pytest.raises(Exception) as e:
            api_b.create_image_db(db)
            api_b.add(db, "theirs", object_url(auth))
        assert (e.value.status, e.value.code) == (400, "InvalidImage.Download"), e.value
        # Its owner can, more than once (a retried call) — read from the store, not fetched.
        assert api.add(db, "ours", object_url(auth))
        assert api.matches(db, object_url(auth))[0]["EntityId"] == "ours"
        # The bucket is not a file server.
        g = requests.get(f"http://127.0.0.1:{server.port}/{auth['ObjectKey']}",
                         headers={"Host": BUCKET_HOST}, timeout=10)
        assert (g.status_code, oss_code(g)) == (405, "MethodNotAllowed"), g.text
        assert [r["EntityId"] for r in api.list_all(db)] == ["ours"]
    finally:
        api.delete_image_db(db)
        try:
            api_b.delete_image_db(db)
        except Exception:
            pass


def test_oversized_files_through_the_sdk(server, images, tmp_path):
    """Over the upload cap (3 MB): the SDK's OSS client raises EntityTooLarge. Over
    AddImage's 2 MB but within SearchImage's 3 MB: stored, AddImage refuses it with its own
    code, SearchImage takes it."""
    client = Client(config(server.port))
    api = ApiClient("tea", server.port, TENANT_A)
    db = unique_name("advbig")
    api.create_image_db(db)
    try:
        rt = via_proxy(server.port)
        huge = tmp_path / "huge.bin"
        huge.write_bytes(os.urandom(3 * 1024 * 1024 + 10))
        with pytest.raises(TeaException) as e:
            add_advance(client, rt, db, "huge", huge)
        assert e.value.code == "EntityTooLarge", e.value
        big = tmp_path / "big.png"
        noise = Image.frombytes("RGB", (1000, 900), os.urandom(1000 * 900 * 3))
        noise.save(big, format="PNG", compress_level=0)
        assert 2 * 1024 * 1024 < big.stat().st_size < 3 * 1024 * 1024
        with pytest.raises(TeaException) as e:
            add_advance(client, rt, db, "big", big)
        assert e.value.code == "InvalidImage.Size", e.value
        add_advance(client, rt, db, "small", images.path(images.good[6]))
        found = search_advance(client, rt, db, big)
        assert [x["EntityId"] for x in found["Data"]["MatchList"]] == ["small"], found
        assert [r["EntityId"] for r in api.list_all(db)] == ["small"]
    finally:
        api.delete_image_db(db)


def test_policies_and_objects_expire(tmp_path, images):
    """Short lifetimes on a server of its own: an expired policy is refused (403
    AccessDenied, saying so), an expired object reads as not available."""
    srv = ServerProcess(tmp_path / "data", extra_args=[
        "--upload-policy-secs", "2", "--upload-object-secs", "3"])
    try:
        api = ApiClient("tea", srv.port, TENANT_A)
        db = unique_name("advexp")
        api.create_image_db(db)
        photo = images.path(images.good[7]).read_bytes()
        late = authorize(srv.port)
        kept = authorize(srv.port)
        r = post_form(srv.port, kept, photo)
        assert r.status_code == 201, r.text
        time.sleep(3.2)
        r = post_form(srv.port, late, photo)
        assert (r.status_code, oss_code(r)) == (403, "AccessDenied"), r.text
        assert "expired" in r.text
        with pytest.raises(Exception) as e:
            api.add(db, "late", object_url(kept))
        assert (e.value.status, e.value.code) == (400, "InvalidImage.Download"), e.value
        assert api.list_all(db) == []
    finally:
        assert srv.terminate() == 0, srv.stderr()
