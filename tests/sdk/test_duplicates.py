"""Duplicate review (ours), the console's Duplicates view: ListDuplicates groups the copies
in a database on the server (polled until Complete), MarkNotDuplicate keeps two images out
of each other's group for good, and DeleteImage with DataId deletes chosen images ("keep
this one, delete the rest"). Signed V1 requests, as aliyun-python-sdk-core sends them (the
SDKs have no such actions)."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from helpers import ApiClient, TENANT_A, TENANT_B, edited_copy, unique_name, v1_request

SAME_PICTURE_SCORE = 8.0  # rules::SAME_PICTURE_SCORE


def call(port, action, tenant=TENANT_A, **params):
    return v1_request(action, params, tenant=tenant).send(port)


def review(port, db, tenant=TENANT_A, **params):
    """ListDuplicates until Complete (each call searches a few seconds at most)."""
    for _ in range(60):
        r = call(port, "ListDuplicates", tenant, DbName=db, **params)
        assert r.status == 200, r.body
        data = r.json()["Data"]
        assert 0 <= data["Searched"] <= data["TotalImages"]
        if data["Complete"]:
            return data
    raise AssertionError("ListDuplicates never completed")


def smaller_copy(images, name: str, out: str) -> str:
    """The picture at 70% of its size, JPEG quality 60 (a re-upload)."""
    with Image.open(images.path(name)) as im:
        im = im.convert("RGB")
        im = im.resize((int(im.size[0] * 0.7), int(im.size[1] * 0.7)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=60)
    return images.write(out, buf.getvalue())


def id_groups(data):
    return [[m["DataId"] for m in g["Images"]] for g in data["Groups"]]


@pytest.fixture
def shelf(server, image_server, images):
    """Six distinct photos, two edited copies of the first and one of the second; yields
    (db, {name: DataId}, client)."""
    client = ApiClient("core", server.port, TENANT_A)
    db = unique_name("dups")
    client.create_image_db(db)
    ids = {f"p{i}": client.add(db, f"p{i}", image_server.url(images.good[i]), extra_data=f"photo {i}")
           for i in range(6)}
    copies = {
        "p0_edit": edited_copy(images, images.good[0], "dup_p0_edit.jpg"),
        "p0_small": smaller_copy(images, images.good[0], "dup_p0_small.jpg"),
        "p1_edit": edited_copy(images, images.good[1], "dup_p1_edit.jpg"),
    }
    for name, file in copies.items():
        ids[name] = client.add(db, name, image_server.url(file), extra_data=f"copy {name}")
    yield db, ids, client
    client.delete_image_db(db)


def test_groups_are_the_copies_oldest_first(server, shelf):
    db, ids, client = shelf
    data = review(server.port, db)
    assert data["TotalImages"] == 9 and data["Searched"] == 9
    assert data["TotalGroups"] == 2
    assert id_groups(data) == [
        [ids["p0"], ids["p0_edit"], ids["p0_small"]],
        [ids["p1"], ids["p1_edit"]],
    ], data
    first, *rest = data["Groups"][0]["Images"]
    assert "ScoreToFirst" not in first
    assert first["EntityId"] == "p0" and first["ExtraData"] == "photo 0"
    assert all(m["ScoreToFirst"] >= SAME_PICTURE_SCORE for m in rest), rest
    # Paging over groups.
    page = call(server.port, "ListDuplicates", DbName=db, Start=1, Limit=1).json()["Data"]
    assert id_groups(page) == [[ids["p1"], ids["p1_edit"]]] and page["TotalGroups"] == 2
    # A stricter bound than any copy's score: no groups.
    assert review(server.port, db, MinScore=10)["TotalGroups"] == 0


def test_keep_one_delete_the_rest_and_not_a_duplicate(server, shelf, image_server, images):
    db, ids, client = shelf
    review(server.port, db)
    # "Not a duplicate": p1_edit leaves p1's group, and it stays out.
    r = call(server.port, "MarkNotDuplicate", DbName=db, DataId=ids["p1_edit"], OtherDataId=ids["p1"])
    assert r.status == 200, r.body
    assert id_groups(review(server.port, db)) == [[ids["p0"], ids["p0_edit"], ids["p0_small"]]]
    # Marked again (either order): still fine, nothing changes.
    assert call(server.port, "MarkNotDuplicate", DbName=db, DataId=ids["p1"],
                OtherDataId=ids["p1_edit"]).status == 200

    # Keep p0_small, delete the rest of its group.
    r = call(server.port, "DeleteImage", DbName=db, DataId=f"{ids['p0']},{ids['p0_edit']}")
    assert r.status == 200, r.body
    assert r.json()["Data"]["Deleted"] == 2
    left = {x["DataId"] for x in client.list_all(db)}
    assert ids["p0"] not in left and ids["p0_edit"] not in left and ids["p0_small"] in left
    assert len(left) == 7
    assert review(server.port, db)["TotalGroups"] == 0
    # A retried delete succeeds and deletes nothing.
    r = call(server.port, "DeleteImage", DbName=db, DataId=ids["p0"])
    assert r.status == 200 and r.json()["Data"]["Deleted"] == 0, r.body

    # A new copy joins the image it copies; only the new image is searched.
    new = client.add(db, "p2_copy", image_server.url(smaller_copy(images, images.good[2], "dup_p2_small.jpg")))
    data = review(server.port, db)
    assert id_groups(data) == [[ids["p2"], new]], data
    # The search engine still finds the deleted and marked images gone / present.
    top = client.matches(db, image_server.url(images.good[0]), limit=1)[0]
    assert top["DataId"] == ids["p0_small"]


def test_marks_are_per_tenant_and_removed_with_the_image(server, shelf):
    db, ids, client = shelf
    b = ApiClient("core", server.port, TENANT_B)
    b.create_image_db(db)
    try:
        r = call(server.port, "MarkNotDuplicate", TENANT_B, DbName=db, DataId=ids["p1"],
                 OtherDataId=ids["p1_edit"])
        assert r.status == 400 and "must both be images" in r.json()["Message"], r.body
        r = call(server.port, "DeleteImage", TENANT_B, DbName=db, DataId=ids["p1"])
        assert r.status == 200 and r.json()["Data"]["Deleted"] == 0, r.body
        assert review(server.port, db, TENANT_B)["TotalImages"] == 0
    finally:
        b.delete_image_db(db)
    # A's group is untouched by B's calls.
    assert [ids["p1"], ids["p1_edit"]] in id_groups(review(server.port, db))


@pytest.mark.parametrize("action, params, words", [
    ("ListDuplicates", {}, "DbName is required"),
    ("ListDuplicates", {"DbName": "no_such_db"}, "no_such_db"),
    ("ListDuplicates", {"MinScore": "11"}, "MinScore \"11\" is invalid"),
    ("ListDuplicates", {"Neighbours": "1"}, "Neighbours \"1\" is invalid"),
    ("ListDuplicates", {"Limit": "0"}, "Limit \"0\" is invalid"),
    ("ListDuplicates", {"Start": "-1"}, "Start \"-1\" is invalid"),
    ("MarkNotDuplicate", {"DataId": "p0"}, "OtherDataId is required"),
    ("MarkNotDuplicate", {"OtherDataId": "p0"}, "DataId is required"),
    ("MarkNotDuplicate", {"DataId": "p0", "OtherDataId": "p0"}, "two different images"),
    ("MarkNotDuplicate", {"DataId": "p0", "OtherDataId": "1000000000000001"}, "must both be images"),
    ("MarkNotDuplicate", {"DataId": "p0", "OtherDataId": "abc"}, "OtherDataId \"abc\" is invalid"),
    ("DeleteImage", {"DataId": "p0", "EntityId": "p0"}, "not both"),
    ("DeleteImage", {"DataId": "p0,x"}, "DataId \"x\" is invalid"),
    ("DeleteImage", {"DataId": ",".join(["1000000000000001"] * 101)}, "at most 100"),
])
def test_errors_change_nothing(server, shelf, action, params, words):
    db, ids, client = shelf
    params = {k: ",".join(ids.get(p, p) for p in v.split(",")) if k in ("DataId", "OtherDataId") else v
              for k, v in params.items()}
    if params or action != "ListDuplicates":
        params.setdefault("DbName", db)
    before = client.list_all(db)
    r = call(server.port, action, **params)
    assert r.status == 400, r.body
    body = r.json()
    assert body["Code"] == "InvalidParameter" and words in body["Message"], body
    assert client.list_all(db) == before
    data = review(server.port, db)
    assert data["TotalGroups"] == 2
