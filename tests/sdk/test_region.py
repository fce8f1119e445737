"""`Region=x1,x2,y1,y2` (ours, Image Search's syntax: pixels, left, right, top, bottom) on
AddImage and SearchImage: only that part of the image is embedded for "looks alike" (the
copy descriptor and thumbnail stay the whole picture's), and the answer's `Data.Region`
says which region was used. A region outside the image, inverted or under 32 px is 400
`InvalidParameter` naming the bound; nothing is stored. Signed V1 requests (the SDKs'
request models have no such field).

The picture: two different photos side by side on one canvas. Searching with the left half
finds the left photo's own image first, with the right half the right one's."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from helpers import unique_name, v1_request


def call(port, action, **params):
    return v1_request(action, params).send(port)


def ok(port, action, **params) -> dict:
    r = call(port, action, **params)
    assert r.status == 200, (action, {k: v for k, v in params.items() if k != "ImageContent"}, r.body)
    return r.json().get("Data") or {}


@pytest.fixture(scope="module")
def pair(server, images, image_server):
    left = Image.open(images.path(images.good[5])).convert("RGB").resize((400, 400))
    right = Image.open(images.path(images.good[9])).convert("RGB").resize((400, 400))
    canvas = Image.new("RGB", (800, 400))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (400, 0))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    name = images.write("pair_800x400.jpg", buf.getvalue())
    db = unique_name("region")
    ok(server.port, "CreateImageDb", Name=db)
    ids = {}
    for key, i in (("left", 5), ("right", 9), ("other", 14), ("more", 20)):
        ids[key] = ok(server.port, "AddImage", DbName=db, EntityId=key,
                      ImageUrl=image_server.url(images.good[i]))["DataId"]
    yield db, ids, image_server.url(name)
    ok(server.port, "DeleteImageDb", Name=db)


def test_search_with_each_half_finds_its_photo(server, pair):
    db, ids, url = pair
    for region, want in (("0,400,0,400", "left"), ("400,800,0,400", "right")):
        data = ok(server.port, "SearchImage", DbName=db, ImageUrl=url, Limit=4, Region=region)
        assert data["Region"] == region
        top = data["MatchList"][0]
        assert top["DataId"] == ids[want], (region, data["MatchList"])
    plain = ok(server.port, "SearchImage", DbName=db, ImageUrl=url, Limit=4)
    assert "Region" not in plain, "no Region sent: the 2020-03-20 answer"


def test_add_with_a_region_stores_that_part(server, pair, images, image_server):
    db, ids, url = pair
    data = ok(server.port, "AddImage", DbName=db, EntityId="cut", ImageUrl=url, Region="400,800,0,400")
    assert data["Region"] == "400,800,0,400"
    # The stored cut-out looks like the right photo: searching with that photo ranks it
    # right after the photo's own image.
    m = ok(server.port, "SearchImage", DbName=db, ImageUrl=image_server.url(images.good[9]),
           Limit=3)["MatchList"]
    assert [x["EntityId"] for x in m[:2]] == ["right", "cut"], m
    call(server.port, "DeleteImage", DbName=db, EntityId="cut")


@pytest.mark.parametrize("action, region, words", [
    ("SearchImage", "0,900,0,400", "x2=900 is beyond the image's width; it must be at most 800"),
    ("SearchImage", "0,400,0,401", "y2=401 is beyond the image's height; it must be at most 400"),
    ("SearchImage", "400,0,0,400", "x1 must be less than x2"),
    ("SearchImage", "0,20,0,400", "each side must be at least 32 px"),
    ("SearchImage", "0,400,0", "is not four whole numbers x1,x2,y1,y2"),
    ("AddImage", "10,20,30", "is not four whole numbers"),
    ("AddImage", "0,801,0,100", "x2=801 is beyond the image's width"),
])
def test_bad_regions_are_refused_and_store_nothing(server, pair, action, region, words):
    db, ids, url = pair
    before = ok(server.port, "ListImages", DbName=db, Limit=100)["TotalCount"]
    params = {"DbName": db, "ImageUrl": url, "Region": region}
    params.update({"Limit": 3} if action == "SearchImage" else {"EntityId": "bad"})
    r = call(server.port, action, **params)
    assert r.status == 400, r.body
    body = r.json()
    assert body["Code"] == "InvalidParameter" and words in body["Message"], body
    assert ok(server.port, "ListImages", DbName=db, Limit=100)["TotalCount"] == before


def test_region_needs_a_new_image(server, pair):
    db, ids, _ = pair
    r = call(server.port, "SearchImage", DbName=db, DataId=ids["left"], Limit=3, Region="0,100,0,100")
    assert r.status == 400 and "cannot be combined with DataId" in r.json()["Message"], r.body
