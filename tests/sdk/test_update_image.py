"""UpdateImage (ours): new ExtraData for one image (DataId) or every image of an entity
(EntityId), without re-embedding: vectors, DataIds and CreatedAt stay, UpdatedAt moves, and
SearchImage/ListImages return the new text at once. Signed V1 requests, as
aliyun-python-sdk-core sends them (the SDKs have no such action)."""

from __future__ import annotations

import time

import pytest

from helpers import ApiClient, TENANT_A, TENANT_B, unique_name, v1_request


def update(port, db, tenant=TENANT_A, **params):
    return v1_request("UpdateImage", {"DbName": db, **params}, tenant=tenant).send(port)


@pytest.fixture
def shelf(server, image_server, images):
    client = ApiClient("core", server.port, TENANT_A)
    db = unique_name("update")
    client.create_image_db(db)
    ids = [client.add(db, e, image_server.url(images.good[i]), extra_data=f"old {i}")
           for i, e in enumerate(["lamp", "lamp", "chair"])]
    yield db, ids, client
    client.delete_image_db(db)


def records(client, db):
    return {r["DataId"]: r for r in client.list_all(db)}


def test_update_by_data_id_and_by_entity(server, shelf, image_server, images):
    db, ids, client = shelf
    before = records(client, db)
    time.sleep(0.01)
    r = update(server.port, db, DataId=ids[2], ExtraData="oak chair, 风格 & <b>")
    assert r.status == 200, r.body
    assert r.json()["Data"]["Updated"] == 1
    after = records(client, db)
    assert after[ids[2]]["ExtraData"] == "oak chair, 风格 & <b>"
    assert after[ids[2]]["CreatedAt"] == before[ids[2]]["CreatedAt"]
    assert after[ids[2]]["UpdatedAt"] > before[ids[2]]["UpdatedAt"]
    assert after[ids[0]] == before[ids[0]] and after[ids[1]] == before[ids[1]]
    # Search sees it at once, with the same vectors (the image still scores 10).
    top = client.matches(db, image_server.url(images.good[2]), limit=1)[0]
    assert top["DataId"] == ids[2] and top["ExtraData"] == "oak chair, 风格 & <b>" and top["Score"] == 10.0

    r = update(server.port, db, EntityId="lamp", ExtraData="")
    assert r.status == 200 and r.json()["Data"]["Updated"] == 2, r.body
    after = records(client, db)
    assert after[ids[0]]["ExtraData"] == "" and after[ids[1]]["ExtraData"] == ""


@pytest.mark.parametrize("params, words", [
    ({"ExtraData": "x"}, "DataId is required"),
    ({"DataId": "1000000000000001", "ExtraData": "x"}, "no image with DataId 1000000000000001"),
    ({"EntityId": "lam", "ExtraData": "x"}, "no image with EntityId \"lam\""),
    ({"EntityId": "lamp"}, "ExtraData is required"),
    ({"EntityId": "lamp", "DataId": "1000000000000001", "ExtraData": "x"}, "both given"),
    ({"EntityId": "lamp", "ExtraData": "图" * 513}, "ExtraData"),
])
def test_update_errors_change_nothing(server, shelf, params, words):
    db, ids, client = shelf
    before = records(client, db)
    r = update(server.port, db, **params)
    assert r.status == 400, r.body
    body = r.json()
    assert body["Code"] == "InvalidParameter" and words in body["Message"], body
    assert records(client, db) == before


def test_another_tenant_cannot_update(server, shelf):
    db, ids, client = shelf
    b = ApiClient("core", server.port, TENANT_B)
    b.create_image_db(db)
    try:
        r = update(server.port, db, tenant=TENANT_B, DataId=ids[0], ExtraData="mine now")
        assert r.status == 400 and "no image with DataId" in r.json()["Message"], r.body
        assert records(client, db)[ids[0]]["ExtraData"] == "old 0"
    finally:
        b.delete_image_db(db)
