"""ListImages: Offset/Limit, Order, EntityIdPrefix, TotalCount, and paging by Token across
more than 2,000 records, through both official SDKs."""

from __future__ import annotations

import base64
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import ApiClient, TENANT_A, expect_error, unique_name

SMALL_ENTITIES = ["cat_a", "cat_b", "cat_a", "catalog", "dog_a", "dog_b", "cow",
                  "cat_c", "dog_a", "zebra", "cat_b", "c"]
BIG_COUNT = 2100


@pytest.fixture(scope="module")
def small_db(server, image_server, images):
    """12 images in creation order with the entity ids of SMALL_ENTITIES (some entities
    have two images). Yields (db, [(DataId, EntityId), ...] in creation order)."""
    c = ApiClient("tea", server.port, TENANT_A)
    db = unique_name("list")
    c.create_image_db(db)
    recs = []
    for i, ent in enumerate(SMALL_ENTITIES):
        recs.append((c.add(db, ent, image_server.url(images.good[i]), f"x{i}"), ent))
    yield db, recs
    c.delete_image_db(db)


@pytest.fixture(scope="module")
def big_db(server, image_server, images):
    """A database of 2,100 records (40 distinct photos reused under distinct EntityIds
    big_00000..big_02099), added by 8 threads (half per SDK). Yields (db, {DataId:
    EntityId})."""
    db = unique_name("big")
    ApiClient("core", server.port, TENANT_A).create_image_db(db)
    local = threading.local()
    thread_no = itertools.count()

    def add(i):
        if not hasattr(local, "client"):
            style = ("tea", "core")[next(thread_no) % 2]
            local.client = ApiClient(style, server.port, TENANT_A)
        url = image_server.url(images.good[i % 40])
        return local.client.add(db, f"big_{i:05d}", url, f"n{i}"), f"big_{i:05d}"

    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        added = dict(pool.map(add, range(BIG_COUNT)))
    print(f"added {BIG_COUNT} images in {time.monotonic() - t0:.1f} s")
    assert len(added) == BIG_COUNT
    yield db, added
    ApiClient("core", server.port, TENANT_A).delete_image_db(db)


def _ids(data):
    return [r["DataId"] for r in data.get("ImageList") or []]


def test_list_fields_and_total_count(client, small_db):
    """Each record has DataId, EntityId, ExtraData, CreatedAt, UpdatedAt (epoch ms, Long);
    TotalCount counts all records."""
    db, recs = small_db
    data = client.list_images(db, limit=100)["Data"]
    assert data["TotalCount"] == len(recs)
    assert not data.get("Token")
    now_ms = time.time() * 1000
    for r in data["ImageList"]:
        assert set(r) >= {"DataId", "EntityId", "ExtraData", "CreatedAt", "UpdatedAt"}, r
        for k in ("CreatedAt", "UpdatedAt"):
            assert isinstance(r[k], int) and now_ms - 3_600_000 < r[k] <= now_ms + 60_000, r
    assert sorted(_ids(data)) == sorted(d for d, _ in recs)


def test_order_asc_and_desc(client, small_db):
    """Order=asc lists by creation time, oldest first; Order=desc newest first."""
    db, recs = small_db
    created = [d for d, _ in recs]
    assert _ids(client.list_images(db, limit=100, order="asc")["Data"]) == created
    assert _ids(client.list_images(db, limit=100, order="desc")["Data"]) == created[::-1]


def test_offset_and_limit(client, small_db):
    """Offset/Limit pages are slices of the full listing; TotalCount stays the total."""
    db, recs = small_db
    created = [d for d, _ in recs]
    for offset, limit in [(0, 5), (5, 5), (10, 5), (3, 1), (11, 10), (12, 3), (50, 2)]:
        data = client.list_images(db, offset=offset, limit=limit, order="asc")["Data"]
        assert _ids(data) == created[offset:offset + limit], (offset, limit)
        assert data["TotalCount"] == len(recs)


@pytest.mark.parametrize("prefix", ["cat", "cat_", "cat_a", "dog", "c", "zebra", "nothing"])
def test_entity_id_prefix(client, small_db, prefix):
    """EntityIdPrefix keeps only entities starting with it; TotalCount counts only those."""
    db, recs = small_db
    want = [d for d, e in recs if e.startswith(prefix)]
    data = client.list_images(db, limit=100, order="asc", entity_id_prefix=prefix)["Data"]
    assert _ids(data) == want
    assert data["TotalCount"] == len(want)
    assert all(r["EntityId"].startswith(prefix) for r in data.get("ImageList") or [])


def test_token_paging_small_pages_with_prefix(client, small_db):
    """Paging by Token with Limit 2 under a prefix visits each matching record once."""
    db, recs = small_db
    for order in ("asc", "desc"):
        got = [r["DataId"] for r in client.list_all(db, limit=2, order=order,
                                                    entity_id_prefix="cat")]
        want = [d for d, e in recs if e.startswith("cat")]
        assert got == (want if order == "asc" else want[::-1])


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_token_paging_over_2000_records(client, big_db, order):
    """Paging by Token through 2,100 records returns every record exactly once, in
    creation order (asc) or its reverse (desc), and ends with no Token."""
    db, added = big_db
    first = client.list_images(db, limit=100, order=order)["Data"]
    assert first["TotalCount"] == BIG_COUNT
    records = client.list_all(db, limit=100, order=order)
    ids = [r["DataId"] for r in records]
    assert len(ids) == len(set(ids)) == BIG_COUNT
    assert set(ids) == set(added)
    ints = [int(x) for x in ids]
    assert ints == sorted(ints, reverse=(order == "desc"))
    assert all(added[r["DataId"]] == r["EntityId"] for r in records)


def test_offset_paging_reaches_2000_and_agrees_with_token_paging(client, big_db):
    """Offset+Limit up to exactly 2,000 works and lists the same records as Token paging;
    Offset+Limit beyond 2,000 → 400 InvalidParameter with a message pointing to Token."""
    db, _ = big_db
    by_token = [r["DataId"] for r in client.list_all(db, limit=100, order="asc")][:2000]
    by_offset = []
    for offset in range(0, 2000, 100):
        by_offset += _ids(client.list_images(db, offset=offset, limit=100, order="asc")["Data"])
    assert by_offset == by_token
    last = client.list_images(db, offset=1980, limit=20, order="asc")["Data"]
    assert _ids(last) == by_token[1980:2000]
    for offset, limit in [(1990, 20), (2000, 1), (2050, 10)]:
        e = expect_error(client.list_images, db, offset=offset, limit=limit,
                         status=400, code="InvalidParameter")
        assert "Token" in e.message, e.message


def _tamper(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_tampered_or_foreign_token_is_invalid_parameter(client, small_db, server):
    """A token with one bit flipped, garbage, or a token of another database / order →
    400 InvalidParameter; the genuine token still works."""
    db, recs = small_db
    token = client.list_images(db, limit=2, order="asc")["Data"]["Token"]
    assert token
    for bad in [_tamper(token), token[:-2], "not-a-token", token + "AA"]:
        expect_error(client.list_images, db, limit=2, order="asc", token=bad,
                     status=400, code="InvalidParameter")
    expect_error(client.list_images, db, limit=2, order="desc", token=token,
                 status=400, code="InvalidParameter")
    other = unique_name("other")
    client.create_image_db(other)
    expect_error(client.list_images, other, limit=2, order="asc", token=token,
                 status=400, code="InvalidParameter")
    client.delete_image_db(other)
    page2 = client.list_images(db, limit=2, order="asc", token=token)["Data"]
    assert _ids(page2) == [d for d, _ in recs][2:4]
