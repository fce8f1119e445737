"""Image links (ours): a SearchImage match that was uploaded as bytes (ImageContent) has no
URL of its own, so it gets a signed, expiring link to its thumbnail, served by the server.
Matches added by URL keep their URL. A link works without credentials until it expires;
altered, expired or for a deleted image, it does not."""

from __future__ import annotations

import base64
import io
import time
import urllib.error
import urllib.request

from PIL import Image

from helpers import ApiClient, ServerProcess, TENANT_A, unique_name, v1_request


def add_bytes(port, db, entity, path):
    content = base64.b64encode(path.read_bytes()).decode()
    r = v1_request("AddImage", {"DbName": db, "EntityId": entity, "ImageContent": content}).send(port)
    assert r.status == 200, r.body
    return r.json()["Data"]["DataId"]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_uploaded_matches_get_a_working_thumbnail_link(server, image_server, images):
    client = ApiClient("tea", server.port, TENANT_A)
    db = unique_name("links")
    client.create_image_db(db)
    try:
        uploaded = add_bytes(server.port, db, "uploaded", images.path(images.good[3]))
        by_url = client.add(db, "by_url", image_server.url(images.good[4]))
        matches = {m["DataId"]: m for m in client.matches(db, image_server.url(images.good[3]), limit=5)}
        link = matches[uploaded]["ImageUrl"]
        assert link.startswith(f"http://127.0.0.1:{server.port}/images/") and link.endswith(".jpg"), link
        assert matches[by_url]["ImageUrl"] == image_server.url(images.good[4])
        status, ctype, body = get(link)
        assert (status, ctype) == (200, "image/jpeg"), body[:200]
        with Image.open(io.BytesIO(body)) as im:
            assert max(im.size) == 256, im.size
        # Altered: refused, saying so.
        token = link.rsplit("/", 1)[1][:-4]
        flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
        status, _, body = get(link.replace(token, flipped))
        assert status == 403 and b"not one this server issued" in body, body
        # Deleted: the link ends with the image.
        client.delete_image(db, "uploaded")
        status, _, body = get(link)
        assert status == 404 and b"deleted" in body, body
    finally:
        client.delete_image_db(db)


def test_links_expire_and_can_be_turned_off(tmp_path, image_server, images):
    srv = ServerProcess(tmp_path / "short", extra_args=["--image-link-secs", "1"])
    try:
        client = ApiClient("core", srv.port, TENANT_A)
        client.create_image_db("links")
        add_bytes(srv.port, "links", "uploaded", images.path(images.good[5]))
        link = client.matches("links", image_server.url(images.good[5]), limit=1)[0]["ImageUrl"]
        assert get(link)[0] == 200
        time.sleep(2.2)
        status, _, body = get(link)
        assert status == 403 and b"expired" in body, body
    finally:
        assert srv.terminate() == 0
    srv = ServerProcess(tmp_path / "off", extra_args=["--image-link-secs", "0"])
    try:
        client = ApiClient("core", srv.port, TENANT_A)
        client.create_image_db("links")
        add_bytes(srv.port, "links", "uploaded", images.path(images.good[5]))
        assert client.matches("links", image_server.url(images.good[5]), limit=1)[0]["ImageUrl"] == ""
    finally:
        assert srv.terminate() == 0
