"""Copy detection (ours): what a database indexes (CreateImageDb `Descriptors`,
ListImageDbs), edited copies found first and scored as "the same picture", and a server
running without the copy-detection model."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageEnhance

from helpers import (ApiClient, ServerProcess, TENANT_A, edited_copy, expect_error, unique_name,
                     v1_request)

SAME_PICTURE_SCORE = 8.0  # rules::SAME_PICTURE_SCORE


def create_with(port: int, name: str, descriptors: str):
    """CreateImageDb with our optional Descriptors parameter (the SDKs' request models do
    not know it; a signed V1 request as aliyun-python-sdk-core sends it)."""
    return v1_request("CreateImageDb", {"Name": name, "Descriptors": descriptors}).send(port)


@pytest.fixture(scope="module")
def catalogue(server, image_server, images):
    """A default database (both descriptors) of 12 photos; yields (db, data ids)."""
    client = ApiClient("tea", server.port, TENANT_A)
    db = unique_name("copies")
    client.create_image_db(db)
    ids = [client.add(db, f"e{i:02d}", image_server.url(n)) for i, n in enumerate(images.good[:12])]
    yield db, ids
    client.delete_image_db(db)


def test_descriptors_are_chosen_at_creation_and_listed(server, core, tea):
    """CreateImageDb takes Descriptors=both|copy|similar (any case; both by default) and
    ListImageDbs shows it for each database, with CopyModel=loaded; an unknown value is a
    400 InvalidParameter that names the choices. The Tea SDK still parses the answer."""
    names = {d: unique_name(d) for d in ("copy", "similar")}
    for d, n in names.items():
        r = create_with(server.port, n, d.upper())
        assert r.status == 200, r.body
    default = unique_name("both")
    core.create_image_db(default)
    body = core.list_image_dbs()
    assert body["Data"]["CopyModel"] == "loaded", body
    listed = {d["Name"]: d.get("Descriptors") for d in body["Data"]["DbList"]}
    assert listed[default] == "both"
    for d, n in names.items():
        assert listed[n] == d
    assert {default, *names.values()} <= set(tea.db_names())
    r = create_with(server.port, unique_name("bad"), "everything")
    status, code = r.error()
    assert (status, code) == (400, "InvalidParameter")
    assert "both" in r.json()["Message"] and "similar" in r.json()["Message"]
    for n in (default, *names.values()):
        core.delete_image_db(n)


def test_an_edited_copy_is_the_same_picture_and_ranks_first(client, catalogue, image_server, images):
    """A cropped, recoloured, recompressed copy of a stored photo finds it first with a
    Score from 8 ("the same picture") to below 10; no other photo reaches 8."""
    db, ids = catalogue
    for i in (2, 7):
        query = edited_copy(images, images.good[i], f"edited_copy_{i}.jpg")
        matches = client.matches(db, image_server.url(query), limit=5)
        top, rest = matches[0], matches[1:]
        assert top["DataId"] == ids[i], matches
        assert SAME_PICTURE_SCORE <= top["Score"] < 10.0, top
        assert all(m["Score"] < SAME_PICTURE_SCORE for m in rest), matches


def test_copy_only_and_similar_only_databases(server, image_server, images, tea):
    """A copy-only database finds the edited copy as the same picture too; a similar-only
    one keeps the 2020-03-20 scale (the same file 10, the rest the semantic cosine × 10)."""
    port = server.port
    for kind in ("copy", "similar"):
        db = unique_name(kind)
        assert create_with(port, db, kind).status == 200
        ids = [tea.add(db, f"e{i}", image_server.url(n)) for i, n in enumerate(images.good[:6])]
        same = tea.matches(db, image_server.url(images.good[4]), limit=3)
        assert same[0]["DataId"] == ids[4] and same[0]["Score"] == 10.0, same
        query = edited_copy(images, images.good[4], f"edited_{kind}.jpg")
        top = tea.matches(db, image_server.url(query), limit=3)[0]
        if kind == "copy":
            assert top["DataId"] == ids[4] and top["Score"] >= SAME_PICTURE_SCORE, top
        else:
            assert 0.0 < top["Score"] < 10.0, top
        tea.delete_image_db(db)


def test_a_server_without_the_copy_model_runs_semantic_only(tmp_path, image_server, images):
    """`--no-copy-model`: the server starts and says so (log and ListImageDbs
    CopyModel=absent); default databases work on the semantic embedding (the same file
    scores 10); a copy-only database cannot take images: 503 ServiceUnavailable with a
    message that says why."""
    srv = ServerProcess(tmp_path / "data", extra_args=["--no-copy-model"])
    try:
        tea = ApiClient("tea", srv.port, TENANT_A)
        core = ApiClient("core", srv.port, TENANT_A)
        assert core.list_image_dbs()["Data"]["CopyModel"] == "absent"
        assert "semantic search only" in srv.stderr()
        tea.create_image_db("plain")
        data_id = tea.add("plain", "e0", image_server.url(images.good[0]))
        tea.add("plain", "e1", image_server.url(images.good[1]))
        top = tea.matches("plain", image_server.url(images.good[0]), limit=2)[0]
        assert top["DataId"] == data_id and top["Score"] == 10.0, top
        assert create_with(srv.port, "copies_only", "copy").status == 200
        e = expect_error(tea.add, "copies_only", "e0", image_server.url(images.good[0]),
                         status=503, code="ServiceUnavailable")
        assert "copy-detection model" in str(e), e
    finally:
        assert srv.terminate() == 0, srv.stderr()
