"""The SSRF guard: a server started WITHOUT --allow-private-urls refuses an ImageUrl on a
loopback address and never connects to it."""

from __future__ import annotations

import pytest

from helpers import STYLES, TENANT_A, ApiClient, ServerProcess, expect_error, unique_name


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("guarded"), allow_private=False)
    yield srv
    rc = srv.terminate()
    assert rc == 0, f"server exited {rc} after SIGTERM; stderr:\n{srv.stderr()}"


@pytest.mark.parametrize("style", STYLES)
def test_private_address_is_refused(guarded_server, image_server, images, style):
    """AddImage and SearchImage with http://127.0.0.1:... → 400
    InvalidParameter.ImageUrlForbidden (README), also behind a redirect's start, and the
    image server receives no request at all."""
    c = ApiClient(style, guarded_server.port, TENANT_A)
    db = unique_name("guard")
    c.create_image_db(db)
    name = images.good[5]
    url = image_server.url(name)
    before = image_server.hit_count(f"/img/{name}")
    e = expect_error(c.add_image, db, "e", url, status=400, code="InvalidParameter.ImageUrlForbidden")
    assert "ImageUrl" in e.message
    expect_error(c.search_image, db, url, 5, status=400, code="InvalidParameter.ImageUrlForbidden")
    for host in ("localhost", "10.0.0.1", "192.168.1.1", "169.254.169.254", "[::1]"):
        expect_error(c.add_image, db, "e", f"http://{host}:{image_server.port}/img/{name}",
                     status=400, code="InvalidParameter.ImageUrlForbidden")
    assert image_server.hit_count(f"/img/{name}") == before
    assert c.list_images(db)["Data"]["TotalCount"] == 0
    c.delete_image_db(db)
