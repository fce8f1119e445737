"""Attributes and filters (ours, with Image Search's names and grammar): AddImage takes
IntAttr…IntAttr4 and StrAttr…StrAttr4, ListImages and SearchImage return the ones set and
take a `Filter` (int_attr*: > >= < <= = != in, not in; str_attr*: = != in, not in; AND/OR,
parentheses), UpdateImage changes them without re-embedding. Signed V1 requests as
aliyun-python-sdk-core sends them (the SDKs' request models have no such fields); the
official SDKs' own calls still work on a database that has attributes.

Every filter's expected images are computed here, in Python, from the attributes we sent —
an independent reading of the grammar's rules (an unset attribute fails = < in… and passes
!= and not in). The same checks run on an exact database (the session server) and on one
past `--ann-threshold` (HNSW: the kept images scanned, or the graph walked with the
filter), and after a restart (the attribute table is rebuilt from the store).
"""

from __future__ import annotations

import time

import pytest

from helpers import TENANT_A, ApiClient, ServerProcess, unique_name, v1_request

COLOURS = ["red", "blue", "green", None]


def attrs_of(i: int) -> dict:
    """The attributes image i gets: a price, a colour (none for every 4th), a stock flag on
    the even ones, a label with quotes and CJK. Image 11 gets none at all."""
    if i == 11:
        return {}
    a = {"IntAttr": i * 10, "StrAttr4": f'lab "{i}" 风'}
    if COLOURS[i % 4]:
        a["StrAttr"] = COLOURS[i % 4]
    if i % 2 == 0:
        a["IntAttr3"] = 1
    return a


def passes(a: dict, cond) -> bool:
    return cond(a)


# (Filter, the same rule in Python over the attributes dict)
FILTERS = [
    ("int_attr >= 50 AND int_attr < 100", lambda a: 50 <= a.get("IntAttr", -1) < 100 and "IntAttr" in a),
    ('str_attr = "red" OR str_attr = \'green\'', lambda a: a.get("StrAttr") in ("red", "green")),
    ("str_attr != 'red'", lambda a: a.get("StrAttr") != "red"),
    ("str_attr not in ('red', 'blue')", lambda a: a.get("StrAttr") not in ("red", "blue")),
    ("intAttr3 = 1 AND (strAttr = 'blue' OR int_attr > 100)",
     lambda a: a.get("IntAttr3") == 1 and (a.get("StrAttr") == "blue" or a.get("IntAttr", -1) > 100)),
    ("int_attr in (0, 30, 110, 999)", lambda a: a.get("IntAttr") in (0, 30, 110, 999)),
    ("int_attr3 != 1", lambda a: a.get("IntAttr3") != 1),
    ('str_attr4 = "lab \\"7\\" 风"', lambda a: a.get("StrAttr4") == 'lab "7" 风'),
    ("int_attr2 = 0", lambda a: False),
]


def call(port, action, **params):
    r = v1_request(action, params).send(port)
    return r


def ok(port, action, **params) -> dict:
    r = call(port, action, **params)
    assert r.status == 200, (action, params, r.body)
    return r.json().get("Data") or {}


def listed(port, db, **params) -> list[dict]:
    out, token = [], None
    for _ in range(100):
        extra = {"Token": token} if token else {}
        data = ok(port, "ListImages", DbName=db, Limit=4, **params, **extra)
        out.extend(data.get("ImageList") or [])
        token = data.get("Token")
        if not token:
            return out
    raise AssertionError("paging did not end")


def fill(port, db, image_server, images, n=14) -> dict:
    """Adds images 0..n-1 with attrs_of(i); returns DataId → (i, attributes)."""
    ok(port, "CreateImageDb", Name=db)
    shelf = {}
    for i in range(n):
        a = attrs_of(i)
        data = ok(port, "AddImage", DbName=db, EntityId=f"item{i}",
                  ImageUrl=image_server.url(images.good[i]), **a)
        shelf[data["DataId"]] = (i, a)
    return shelf


def attr_fields(record: dict) -> dict:
    return {k: v for k, v in record.items() if k.startswith(("IntAttr", "StrAttr"))}


def check_filters(port, db, shelf, image_server, images):
    # Listing: every record with its attributes; a filter keeps exactly the passing ones.
    records = listed(port, db)
    assert {r["DataId"]: attr_fields(r) for r in records} == {d: a for d, (_, a) in shelf.items()}
    for text, rule in FILTERS:
        want = sorted(d for d, (_, a) in shelf.items() if rule(a))
        got = listed(port, db, Filter=text)
        assert sorted(r["DataId"] for r in got) == want, text
        first = ok(port, "ListImages", DbName=db, Limit=1, Filter=text)
        assert first["TotalCount"] == len(want), text
        # Search: only passing images, the query's own image first when it passes.
        for q in (3, 7, 11):
            m = ok(port, "SearchImage", DbName=db, ImageUrl=image_server.url(images.good[q]),
                   Limit=20, Filter=text)["MatchList"]
            ids = [x["DataId"] for x in m]
            assert set(ids) <= set(want), (text, q)
            assert len(ids) == len(want), (text, q, "every passing image of a small db is ranked")
            own = next(d for d, (i, _) in shelf.items() if i == q)
            if own in want:
                assert ids[0] == own and m[0]["Score"] == 10.0, (text, q, m[:2])
            assert all(attr_fields(x) == shelf[x["DataId"]][1] for x in m)


@pytest.fixture(scope="module")
def exact_shelf(server, image_server, images):
    db = unique_name("attrs")
    shelf = fill(server.port, db, image_server, images)
    yield db, shelf
    ok(server.port, "DeleteImageDb", Name=db)


def test_attributes_listed_and_filtered_exact(server, exact_shelf, image_server, images):
    db, shelf = exact_shelf
    check_filters(server.port, db, shelf, image_server, images)


def test_official_sdks_still_read_a_database_with_attributes(server, exact_shelf, image_server, images):
    db, shelf = exact_shelf
    for style in ("core", "tea"):
        client = ApiClient(style, server.port, TENANT_A)
        assert len(client.list_all(db)) == len(shelf)
        assert client.matches(db, image_server.url(images.good[2]), limit=3)[0]["Score"] == 10.0


def test_filter_is_part_of_the_list_token(server, exact_shelf):
    db, _ = exact_shelf
    page = ok(server.port, "ListImages", DbName=db, Limit=2, Filter="int_attr < 100")
    assert page.get("Token")
    r = call(server.port, "ListImages", DbName=db, Limit=2, Token=page["Token"], Filter="int_attr < 50")
    assert r.status == 400 and r.json()["Code"] == "InvalidParameter", r.body
    r = call(server.port, "ListImages", DbName=db, Limit=2, Token=page["Token"])
    assert r.status == 400, r.body


def test_update_attributes_without_reembedding(server, image_server, images):
    db = unique_name("attrupd")
    shelf = fill(server.port, db, image_server, images, n=6)
    try:
        target = next(d for d, (i, _) in shelf.items() if i == 1)
        before = {r["DataId"]: r for r in listed(server.port, db)}
        data = ok(server.port, "UpdateImage", DbName=db, DataId=target, IntAttr2="77", StrAttr="black")
        assert data["Updated"] == 1
        after = {r["DataId"]: r for r in listed(server.port, db)}
        want = {**shelf[target][1], "IntAttr2": 77, "StrAttr": "black"}
        assert attr_fields(after[target]) == want
        assert after[target]["ExtraData"] == before[target]["ExtraData"], "ExtraData not sent: kept"
        m = ok(server.port, "SearchImage", DbName=db, ImageUrl=image_server.url(images.good[1]),
               Limit=5, Filter="int_attr2 = 77 AND str_attr = 'black'")["MatchList"]
        assert [x["DataId"] for x in m] == [target] and m[0]["Score"] == 10.0
        # Every image of an entity, attributes and ExtraData together.
        data = ok(server.port, "UpdateImage", DbName=db, EntityId="item2", IntAttr="-5", ExtraData="sale")
        assert data["Updated"] == 1
        m = ok(server.port, "SearchImage", DbName=db, ImageUrl=image_server.url(images.good[2]),
               Limit=5, Filter="int_attr < 0")["MatchList"]
        assert len(m) == 1 and m[0]["ExtraData"] == "sale" and m[0]["IntAttr"] == -5
    finally:
        ok(server.port, "DeleteImageDb", Name=db)


@pytest.mark.parametrize("action, params, code, words", [
    ("SearchImage", {"Filter": "price > 3"}, "InvalidParameter.Filter", "at character 1: expected an attribute"),
    ("SearchImage", {"Filter": "int_attr >= 'a'"}, "InvalidParameter.Filter", "at character 13: expected a whole number"),
    ("SearchImage", {"Filter": "str_attr > 'a'"}, "InvalidParameter.Filter", "strings have no order"),
    ("SearchImage", {"Filter": "(int_attr = 1"}, "InvalidParameter.Filter", "at character 14: expected )"),
    ("ListImages", {"Filter": "int_attr = 1 AND"}, "InvalidParameter.Filter", "at character 17"),
    ("ListImages", {"Filter": "int_attr = 1 OR " * 300}, "InvalidParameter.Filter", "at most 4096 are allowed"),
    ("AddImage", {"EntityId": "x", "IntAttr": "12.5"}, "InvalidParameter.Attribute", "IntAttr is \"12.5\""),
    ("AddImage", {"EntityId": "x", "IntAttr4": "9007199254740992"}, "InvalidParameter.Attribute", "IntAttr4"),
    ("AddImage", {"EntityId": "x", "StrAttr2": "é" * 129}, "InvalidParameter.Attribute", "129 characters"),
    ("UpdateImage", {"EntityId": "item0", "StrAttr3": "a\tb"}, "InvalidParameter.Attribute", "control characters"),
])
def test_bad_filters_and_attributes_are_refused_and_change_nothing(
        server, exact_shelf, image_server, images, action, params, code, words):
    db, shelf = exact_shelf
    before = listed(server.port, db)
    if action in ("SearchImage", "AddImage"):
        params = {"ImageUrl": image_server.url(images.good[20]), **params}
    if action == "SearchImage":
        params = {"Limit": 5, **params}
    r = call(server.port, action, DbName=db, **params)
    assert r.status == 400, r.body
    body = r.json()
    assert body["Code"] == code and words in body["Message"], body
    assert listed(server.port, db) == before


def test_filtered_search_on_an_ann_database_and_after_a_restart(tmp_path, image_server, images):
    data = tmp_path / "data"
    srv = ServerProcess(data, extra_args=("--ann-threshold", "10", "--index-snapshot-secs", "1"))
    try:
        db = "annattrs"
        shelf = fill(srv.port, db, image_server, images, n=24)
        for _ in range(100):  # the promotion to HNSW runs in the background
            if list((data / "indexes").rglob("snapshot.json")):
                break
            time.sleep(0.1)
        assert list((data / "indexes").rglob("snapshot.json")), "the database was not promoted"
        check_filters(srv.port, db, shelf, image_server, images)
        assert srv.terminate() == 0
        srv = ServerProcess(data, extra_args=("--ann-threshold", "10"))
        check_filters(srv.port, db, shelf, image_server, images)
    finally:
        srv.terminate()
