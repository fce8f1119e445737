"""`Crop=true` (ours) on AddImage and SearchImage: the server finds the picture's main
subject (U-2-Net small) and embeds it. SearchImage searches with the whole picture and the
subject's box, each stored image keeping its better score; AddImage stores the box's
embedding (thumbnail and copy descriptor stay the whole picture's). `Data.Region` is the
box used ("x1,x2,y1,y2", the picture's pixels) and `Data.Crop` says "subject", or "whole
image: <why>" when no subject was found. `Crop` with `Region`, with a stored-image query
(`DataId`), or with a value other than true/false is 400 `InvalidParameter`; nothing is
stored. Signed V1 requests (the SDKs' request models have no such field).

The picture: a product photo scaled to 40% per side and pasted on a mosaic of
random-coloured 32-px blocks (bench quality's "paste 40% on blocks"). Among 12 stored
photos the whole-image search still ranks it first but at Score 5.5; with Crop=true it
scores 7.6 (at 1,000 images the plain search finds such pastes first about a third of the
time: README "Regions and Crop")."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from helpers import unique_name, v1_request

# Index into images.good of the product photo (a beer bottle), and the other stored photos.
PRODUCT = 22
OTHERS = [0, 5, 9, 14, 20, 24, 28, 31, 35, 40, 44]


def call(port, action, **params):
    return v1_request(action, params).send(port)


def ok(port, action, **params) -> dict:
    r = call(port, action, **params)
    assert r.status == 200, (action, {k: v for k, v in params.items() if k != "ImageContent"}, r.body)
    return r.json().get("Data") or {}


def on_blocks(photo: Image.Image, seed: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The photo at 40% per side on a canvas of its size made of random-coloured 32-px
    blocks, and where it went (x1, x2, y1, y2)."""
    rng = random.Random(seed)
    w, h = photo.size
    canvas = Image.new("RGB", (w, h))
    for by in range(0, h, 32):
        for bx in range(0, w, 32):
            colour = tuple(rng.randrange(256) for _ in range(3))
            canvas.paste(colour, (bx, by, min(bx + 32, w), min(by + 32, h)))
    small = photo.resize((round(w * 0.4), round(h * 0.4)), Image.Resampling.LANCZOS)
    x, y = rng.randrange(w - small.width), rng.randrange(h - small.height)
    canvas.paste(small, (x, y))
    return canvas, (x, x + small.width, y, y + small.height)


def inside(box, placed) -> float:
    """Share of `box` (x1, x2, y1, y2) inside `placed`: the subject is in the pasted
    photo (it may be a part of it, the bottle rather than the whole photo)."""
    iw = max(0, min(box[1], placed[1]) - max(box[0], placed[0]))
    ih = max(0, min(box[3], placed[3]) - max(box[2], placed[2]))
    return iw * ih / ((box[1] - box[0]) * (box[3] - box[2]))


@pytest.fixture(scope="module")
def shop(server, images, image_server):
    photo = Image.open(images.path(images.good[PRODUCT])).convert("RGB")
    picture, placed = on_blocks(photo, seed=7)
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=92)
    name = images.write("product_on_blocks.jpg", buf.getvalue())
    db = unique_name("crop")
    ok(server.port, "CreateImageDb", Name=db)
    ids = {"product": ok(server.port, "AddImage", DbName=db, EntityId="product",
                         ImageUrl=image_server.url(images.good[PRODUCT]))["DataId"]}
    for i in OTHERS:
        ids[f"other{i}"] = ok(server.port, "AddImage", DbName=db, EntityId=f"other{i}",
                              ImageUrl=image_server.url(images.good[i]))["DataId"]
    yield db, ids, image_server.url(name), placed, picture.size
    ok(server.port, "DeleteImageDb", Name=db)


def region_of(data: dict) -> tuple[int, int, int, int]:
    x1, x2, y1, y2 = (int(v) for v in data["Region"].split(","))
    return x1, x2, y1, y2


def test_the_subject_model_is_listed(server):
    assert ok(server.port, "ListImageDbs")["SubjectModel"] == "loaded"


def test_search_with_crop_finds_the_pasted_product_first(server, shop):
    db, ids, url, placed, (w, h) = shop
    plain = ok(server.port, "SearchImage", DbName=db, ImageUrl=url, Limit=12)
    assert "Region" not in plain and "Crop" not in plain, plain
    cropped = ok(server.port, "SearchImage", DbName=db, ImageUrl=url, Limit=12, Crop="true")
    assert cropped["Crop"] == "subject", cropped
    box = region_of(cropped)
    assert 0 <= box[0] < box[1] <= w and 0 <= box[2] < box[3] <= h, box
    assert inside(box, placed) > 0.6, (box, placed)
    top = cropped["MatchList"][0]
    assert top["DataId"] == ids["product"], cropped["MatchList"]
    # Without Crop the product is not first, or at least scores lower: the mosaic dominates.
    plain_scores = {m["DataId"]: m["Score"] for m in plain["MatchList"]}
    assert plain["MatchList"][0]["DataId"] != ids["product"] or \
        plain_scores[ids["product"]] < top["Score"], (plain["MatchList"], top)
    assert plain_scores.get(ids["product"], 0.0) < top["Score"]
    # Crop=false (any case) is the plain search.
    again = ok(server.port, "SearchImage", DbName=db, ImageUrl=url, Limit=12, Crop="FALSE")
    assert again == plain


def test_crop_keeps_the_whole_picture_as_a_query_too(server, shop, images, image_server):
    """The product photo itself, cropped or not, still finds itself first at the top score:
    the whole-image vector is always one of the query vectors."""
    db, ids, _, _, _ = shop
    url = image_server.url(images.good[PRODUCT])
    plain = ok(server.port, "SearchImage", DbName=db, ImageUrl=url, Limit=2)["MatchList"][0]
    data = ok(server.port, "SearchImage", DbName=db, ImageUrl=url, Limit=2, Crop="True")
    assert data["Crop"] == "subject" or data["Crop"].startswith("whole image: "), data
    assert ("Region" in data) == (data["Crop"] == "subject"), data
    top = data["MatchList"][0]
    assert top["DataId"] == plain["DataId"] == ids["product"], data
    assert top["Score"] >= plain["Score"], (top, plain)


def test_add_with_crop_stores_the_subject(server, shop, images, image_server):
    db, ids, url, placed, _ = shop
    data = ok(server.port, "AddImage", DbName=db, EntityId="pasted", ImageUrl=url, Crop="true")
    assert data["Crop"] == "subject" and inside(region_of(data), placed) > 0.6, data
    # The stored box looks like the product: searching with the product photo ranks it
    # right after the photo's own image.
    m = ok(server.port, "SearchImage", DbName=db, ImageUrl=image_server.url(images.good[PRODUCT]),
           Limit=3)["MatchList"]
    assert [x["EntityId"] for x in m[:2]] == ["product", "pasted"], m
    ok(server.port, "DeleteImage", DbName=db, EntityId="pasted")


@pytest.mark.parametrize("action, extra, words", [
    ("SearchImage", {"Crop": "maybe"}, 'Crop "maybe" is invalid: use true or false'),
    ("AddImage", {"Crop": "1"}, 'Crop "1" is invalid: use true or false'),
    ("SearchImage", {"Crop": "true", "Region": "0,100,0,100"},
     "Crop=true finds the region itself; send either Region or Crop=true, not both"),
    ("AddImage", {"Crop": "true", "Region": "0,100,0,100"}, "not both"),
])
def test_bad_crops_are_refused_and_store_nothing(server, shop, action, extra, words):
    db, ids, url, _, _ = shop
    before = ok(server.port, "ListImages", DbName=db, Limit=100)["TotalCount"]
    params = {"DbName": db, "ImageUrl": url, **extra}
    params.update({"Limit": 3} if action == "SearchImage" else {"EntityId": "bad"})
    r = call(server.port, action, **params)
    assert r.status == 400, r.body
    body = r.json()
    assert body["Code"] == "InvalidParameter" and words in body["Message"], body
    assert ok(server.port, "ListImages", DbName=db, Limit=100)["TotalCount"] == before


def test_crop_needs_a_new_image(server, shop):
    db, ids, _, _, _ = shop
    for key in ("DataId", "EntityId"):
        value = ids["product"] if key == "DataId" else "product"
        r = call(server.port, "SearchImage", DbName=db, Limit=3, Crop="true", **{key: value})
        assert r.status == 400, r.body
        body = r.json()
        assert body["Code"] == "InvalidParameter", body
        assert "Crop=true finds the subject of a new image" in body["Message"], body
        assert "cannot be combined with DataId or EntityId" in body["Message"], body
