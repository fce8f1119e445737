"""SearchImage with a stored image (ours): `DataId`, or `EntityId` (its first image), instead
of ImageUrl/ImageContent. Nothing is fetched or embedded; the stored descriptors are the
query, so the image finds itself at Score 10 and the rest in the order a re-submitted file
would give. The official SDKs' request models have no such field, so these are signed V1
requests as aliyun-python-sdk-core sends them."""

from __future__ import annotations

import pytest

from helpers import ApiClient, TENANT_A, TENANT_B, unique_name, v1_request


def search_stored(port, db, tenant=TENANT_A, **by):
    return v1_request("SearchImage", {"DbName": db, "Limit": 5, **by}, tenant=tenant).send(port)


@pytest.fixture(scope="module")
def shop(server, image_server, images):
    client = ApiClient("tea", server.port, TENANT_A)
    db = unique_name("stored")
    client.create_image_db(db)
    ids = [client.add(db, f"sku_{i // 2}", image_server.url(n)) for i, n in enumerate(images.good[:8])]
    yield db, ids, client
    client.delete_image_db(db)


def test_a_stored_image_finds_itself_first_and_the_same_neighbours(server, shop, image_server, images):
    db, ids, client = shop
    by_url = client.matches(db, image_server.url(images.good[5]), limit=5)
    r = search_stored(server.port, db, DataId=ids[5])
    assert r.status == 200, r.body
    by_id = r.json()["Data"]["MatchList"]
    assert by_id[0]["DataId"] == ids[5] and by_id[0]["Score"] == 10.0, by_id
    assert by_id[0]["EntityId"] == "sku_2" and by_id[0]["ImageUrl"] == image_server.url(images.good[5])
    # The others: looking alike, not copies, and mostly the neighbours the re-submitted file
    # has (not exactly: the stored copy descriptor is the thumbnail's, the query's the
    # full image's).
    assert all(m["Score"] < 8.0 for m in by_id[1:]), by_id
    shared = {m["DataId"] for m in by_id} & {m["DataId"] for m in by_url}
    assert len(shared) >= 3, (by_id, by_url)


def test_by_entity_id_uses_its_first_image(server, shop):
    db, ids, _ = shop
    r = search_stored(server.port, db, EntityId="sku_3", DistinctEntity="true")
    assert r.status == 200, r.body
    matches = r.json()["Data"]["MatchList"]
    assert matches[0]["DataId"] == ids[6], matches  # sku_3 = images 6 and 7; 6 came first
    assert len({m["EntityId"] for m in matches}) == len(matches)


@pytest.mark.parametrize("by, code, words", [
    ({"DataId": "1000000000000001"}, "InvalidParameter", "no image with DataId 1000000000000001"),
    ({"DataId": "12x"}, "InvalidParameter", "DataId \"12x\" is invalid"),
    ({"EntityId": "sku"}, "InvalidParameter", "no image with EntityId \"sku\" (an exact"),
    ({"DataId": "1000000000000001", "ImageUrl": "http://127.0.0.1/x.jpg"}, "InvalidParameter",
     "ImageUrl and DataId were both given"),
    ({"EntityId": "sku_1", "DataId": "1000000000000001"}, "InvalidParameter",
     "DataId and EntityId were both given"),
])
def test_stored_image_errors(server, shop, by, code, words):
    db, _, _ = shop
    r = search_stored(server.port, db, **by)
    assert r.status == 400, r.body
    assert r.json()["Code"] == code and words in r.json()["Message"], r.json()


def test_another_tenants_image_is_not_found(server, shop):
    """Tenant B names tenant A's DataId in its own database of the same name: not found."""
    db, ids, _ = shop
    b = ApiClient("core", server.port, TENANT_B)
    b.create_image_db(db)
    try:
        r = search_stored(server.port, db, tenant=TENANT_B, DataId=ids[0])
        assert r.status == 400 and "no image with DataId" in r.json()["Message"], r.body
    finally:
        b.delete_image_db(db)
