"""AddImage, SearchImage and DeleteImage through both official SDKs."""

from __future__ import annotations

import pytest

from helpers import ApiClient, TENANT_A, unique_name

EXTRA_TRICKY = "风景 照片 a*b~c (x+y)=1&z % / \"quoted\" <tag> 'single' 末尾"


@pytest.fixture(scope="module")
def populated(server, image_server, images):
    """A database holding 12 distinct photos (entity e00..e11), added alternately through
    the two SDKs. Yields (db, records) where records[i] = dict(DataId, EntityId,
    ExtraData, ImageUrl, name)."""
    clients = [ApiClient("tea", server.port, TENANT_A), ApiClient("core", server.port, TENANT_A)]
    db = unique_name("search")
    clients[0].create_image_db(db)
    records = []
    for i, name in enumerate(images.good[:12]):
        url = image_server.url(name)
        extra = f"photo {i} {EXTRA_TRICKY}" if i % 3 == 0 else f"plain {i}"
        data_id = clients[i % 2].add(db, f"e{i:02d}", url, extra)
        records.append(dict(DataId=data_id, EntityId=f"e{i:02d}", ExtraData=extra,
                            ImageUrl=url, name=name))
    yield db, records
    clients[0].delete_image_db(db)


def test_add_image_returns_increasing_16_digit_data_ids(client, image_server, images):
    """AddImage answers Data.DataId: a 16-digit string, unique, strictly increasing from
    one add to the next (also with an empty ExtraData)."""
    db = unique_name()
    client.create_image_db(db)
    ids = []
    for i, name in enumerate(images.good[12:17]):
        body = client.add_image(db, f"ent_{i}", image_server.url(name), "")
        assert body["RequestId"]
        data_id = body["Data"]["DataId"]
        assert isinstance(data_id, str) and len(data_id) == 16 and data_id.isdigit(), data_id
        ids.append(data_id)
    assert [int(x) for x in ids] == sorted({int(x) for x in ids}), ids
    client.delete_image_db(db)


def test_search_finds_the_same_image_first_with_score_10(client, populated):
    """SearchImage with an image that is in the database returns that record first with
    Score exactly 10.0, and every field as it was added; the other matches are visually
    different photos and score strictly lower; scores are in 0..10, best first."""
    db, records = populated
    for rec in records[:6]:
        matches = client.matches(db, rec["ImageUrl"], limit=5)
        assert matches, rec
        top = matches[0]
        assert top["DataId"] == rec["DataId"]
        assert top["Score"] == 10.0, top
        assert isinstance(top["Score"], float)
        for k in ("EntityId", "ExtraData", "ImageUrl"):
            assert top[k] == rec[k], (k, top, rec)
        scores = [m["Score"] for m in matches]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s < 10.0 for s in scores[1:]), scores
        assert len({m["DataId"] for m in matches}) == len(matches)


def test_image_not_in_db_scores_below_10(client, populated, image_server, images):
    """A photo that is not in the database matches nothing with Score 10."""
    db, _ = populated
    matches = client.matches(db, image_server.url(images.good[40]), limit=3)
    assert len(matches) == 3
    assert all(0.0 <= m["Score"] < 10.0 for m in matches), matches


@pytest.mark.parametrize("limit", [1, 3, 12, 50, 1000])
def test_search_limit_is_respected(client, populated, limit):
    """MatchList holds min(Limit, images in the database) entries."""
    db, records = populated
    matches = client.matches(db, records[1]["ImageUrl"], limit=limit)
    assert len(matches) == min(limit, len(records))
    assert matches[0]["DataId"] == records[1]["DataId"]


def test_match_list_fields_round_trip(client, populated):
    """MatchList entries carry exactly DataId, EntityId, ExtraData, ImageUrl, Score with
    the added values; ExtraData with CJK, spaces, `*`, `~`, `+`, `=`, `&`, `%`, quotes and
    `<>` survives SearchImage and ListImages unchanged."""
    db, records = populated
    rec = records[0]
    assert EXTRA_TRICKY in rec["ExtraData"]
    top = client.matches(db, rec["ImageUrl"], limit=1)[0]
    assert set(top) >= {"DataId", "EntityId", "ExtraData", "ImageUrl", "Score"}, top
    assert top["ExtraData"] == rec["ExtraData"]
    listed = {r["DataId"]: r for r in client.list_all(db)}
    assert listed[rec["DataId"]]["ExtraData"] == rec["ExtraData"]
    assert listed[rec["DataId"]]["EntityId"] == rec["EntityId"]


def test_search_empty_db_returns_no_matches(client, image_server, images):
    """SearchImage on an empty database succeeds with an empty MatchList."""
    db = unique_name("empty")
    client.create_image_db(db)
    assert client.matches(db, image_server.url(images.good[0]), limit=5) == []
    client.delete_image_db(db)


def test_png_and_boundary_resolutions_are_accepted(client, image_server, images):
    """PNG is accepted; a side of 129 px or 1023 px is inside the limits (strictly between
    128 and 1024), and such images are found again with Score 10."""
    db = unique_name()
    client.create_image_db(db)
    for i, name in enumerate([images.png, images.side_129, images.side_1023]):
        data_id = client.add(db, f"b{i}", image_server.url(name))
        top = client.matches(db, image_server.url(name), limit=1)[0]
        assert top["DataId"] == data_id and top["Score"] == 10.0, (name, top)
    client.delete_image_db(db)


def test_short_redirect_chain_is_followed(client, image_server, images):
    """An ImageUrl that redirects twice before the image is fetched like a direct one."""
    db = unique_name()
    client.create_image_db(db)
    url = image_server.redirect_url(2, images.good[20])
    data_id = client.add(db, "redir", url)
    top = client.matches(db, image_server.url(images.good[20]), limit=1)[0]
    assert top["DataId"] == data_id and top["Score"] == 10.0
    assert top["ImageUrl"] == url  # the URL as the client gave it
    client.delete_image_db(db)


def test_search_accepts_an_image_between_2_and_3_mb(client, populated, image_server, images):
    """SearchImage allows up to 3 MB (AddImage only 2 MB): a valid 2.6 MB JPEG works."""
    db, records = populated
    matches = client.matches(db, image_server.url(images.between_2_and_3mb), limit=2)
    assert len(matches) == 2
    assert all(m["Score"] < 10.0 for m in matches)


def test_delete_image_removes_every_image_of_the_entity(client, image_server, images):
    """DeleteImage(EntityId) removes all images of that entity: no longer listed, not
    counted, never found by SearchImage; other entities stay intact."""
    db = unique_name()
    client.create_image_db(db)
    gone_names = images.good[21:24]
    gone = {client.add(db, "victim", image_server.url(n), f"v{i}") for i, n in enumerate(gone_names)}
    keep = client.add(db, "victim_not", image_server.url(images.good[24]), "keep")
    keep2 = client.add(db, "other", image_server.url(images.good[25]), "keep")
    assert client.list_images(db)["Data"]["TotalCount"] == 5
    body = client.delete_image(db, "victim")
    assert body["RequestId"]
    listed = client.list_all(db)
    assert {r["DataId"] for r in listed} == {keep, keep2}
    assert client.list_images(db)["Data"]["TotalCount"] == 2
    assert client.list_images(db, entity_id_prefix="victim")["Data"]["TotalCount"] == 1
    for n in gone_names:
        for m in client.matches(db, image_server.url(n), limit=10):
            assert m["DataId"] not in gone and m["EntityId"] != "victim", m
            assert m["Score"] < 10.0
    top = client.matches(db, image_server.url(images.good[24]), limit=1)[0]
    assert top["DataId"] == keep and top["Score"] == 10.0
    client.delete_image_db(db)


def test_same_image_added_twice_gets_two_records(client, image_server, images):
    """Adding the same URL twice (two entities) stores two records; both score 10."""
    db = unique_name()
    client.create_image_db(db)
    url = image_server.url(images.good[26])
    a = client.add(db, "twin_a", url)
    b = client.add(db, "twin_b", url)
    assert a != b
    top2 = client.matches(db, url, limit=2)
    assert {m["DataId"] for m in top2} == {a, b}
    assert all(m["Score"] == 10.0 for m in top2)
    client.delete_image_db(db)


def test_image_url_with_a_space(client, image_server, images):
    """An ImageUrl with a space in the path (literal or as %20) is fetched, and SearchImage
    reports the ImageUrl exactly as it was given."""
    db = unique_name()
    client.create_image_db(db)
    base = f"http://127.0.0.1:{image_server.port}/img/"
    literal = client.add(db, "literal", base + "with space.jpg")
    encoded = client.add(db, "encoded", base + "with%20space.jpg")
    hits = client.matches(db, image_server.url(images.good[-1]), limit=2)
    assert {m["DataId"] for m in hits} == {literal, encoded}
    assert all(m["Score"] == 10.0 for m in hits)
    urls = {m["DataId"]: m["ImageUrl"] for m in hits}
    assert urls[literal] == base + "with space.jpg"
    assert urls[encoded] == base + "with%20space.jpg"
    client.delete_image_db(db)
