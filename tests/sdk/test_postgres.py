"""`imgsearch serve --store postgres://…` (the PostgreSQL store, preview) through both official
SDKs, against a real PostgreSQL server this module starts (tests/sdk/pg.py): the everyday
actions, a restart with an empty data directory (the images live in PostgreSQL), two
servers on one store, PostgreSQL going away (503 ServiceUnavailable, /readyz not ready)
and coming back (the server recovers by itself), and the same answers as the SQLite store on
the same data."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from helpers import STYLES, TENANT_A, ApiClient, ServerProcess, expect_error, unique_name
from pg import PgServer


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    srv = PgServer(tmp_path_factory.mktemp("pg"))
    yield srv
    srv.remove()


def start(tmp_path, name, store_url, **kw) -> ServerProcess:
    srv = ServerProcess(tmp_path / name, extra_args=["--store", store_url], **kw)
    assert "store: PostgreSQL" in srv.stderr(), srv.stderr()
    return srv


@pytest.fixture(scope="module")
def pg_node(pg, tmp_path_factory):
    """One server on a fresh PostgreSQL store for the module."""
    srv = start(tmp_path_factory.mktemp("pgnode"), "data", pg.store_url())
    yield srv
    rc = srv.terminate()
    assert rc == 0, f"server exited {rc} after SIGTERM; stderr:\n{srv.stderr()}"


def readyz(port: int) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("style", STYLES)
def test_create_add_search_list_delete(pg_node, style, image_server, images):
    """The everyday path on the PostgreSQL store: CreateImageDb, AddImage, SearchImage finds
    the same picture first with Score 10, ListImages pages by Token in both orders with the
    right TotalCount, DeleteImage, ListImageDbs, DeleteImageDb."""
    c = ApiClient(style, pg_node.port, TENANT_A)
    db = unique_name("pg")
    c.create_image_db(db)
    expect_error(c.create_image_db, db, status=400, code="InvalidParameter")
    ids = {}
    for i, name in enumerate(images.good[:7]):
        ids[f"e{i}"] = c.add(db, f"e{i}", image_server.url(name), f"extra {i} 风景")
    assert sorted(ids.values()) == list(ids.values()), "DataIds increase"
    top = c.matches(db, image_server.url(images.good[3]), limit=3)[0]
    assert (top["DataId"], top["EntityId"], top["Score"]) == (ids["e3"], "e3", 10.0)
    assert top["ExtraData"] == "extra 3 风景"

    listed = c.list_all(db, limit=2, order="ASC")
    assert [r["DataId"] for r in listed] == sorted(ids.values())
    desc = c.list_all(db, limit=3, order="DESC")
    assert [r["DataId"] for r in desc] == sorted(ids.values(), reverse=True)
    page = c.list_images(db, limit=2)["Data"]
    assert page["TotalCount"] == 7 and page["Token"]

    c.delete_image(db, "e3")
    assert "e3" not in {r["EntityId"] for r in c.list_all(db)}
    after = c.matches(db, image_server.url(images.good[3]), limit=3)
    assert all(m["DataId"] != ids["e3"] for m in after), after
    assert db in c.db_names()
    c.delete_image_db(db)
    assert db not in c.db_names()


def test_a_restarted_server_with_an_empty_data_directory_finds_everything(
        pg, tmp_path, image_server, images):
    """The images, vectors and thumbnails live in PostgreSQL: a server started on the same
    store with a new, empty data directory lists and finds what the first one added."""
    url = pg.store_url()
    first = start(tmp_path, "one", url)
    c = first.client("tea")
    db = unique_name("restart")
    c.create_image_db(db)
    added = [c.add(db, f"e{i}", image_server.url(n)) for i, n in enumerate(images.good[:5])]
    assert first.terminate() == 0
    second = start(tmp_path, "two", url)
    try:
        c = second.client("core")
        assert [r["DataId"] for r in c.list_all(db, order="ASC")] == added
        top = c.matches(db, image_server.url(images.good[2]), limit=1)[0]
        assert (top["DataId"], top["Score"]) == (added[2], 10.0)
    finally:
        assert second.terminate() == 0


def test_two_servers_share_one_store(pg, tmp_path, image_server, images):
    """Two servers on one store. What is shared today: the records (a database created on A
    exists for B; B lists, pages by Token and finds at start what A added; A lists what B
    added; DataIds from both are unique and increase; A's DeleteImageDb removes it for B's
    ListImageDbs). Not yet: each node's search index and database registry are built at
    its start, so a node neither searches images another node added since, nor knows a
    database created after its start (the pgvector step)."""
    url = pg.store_url()
    a = start(tmp_path, "a", url)
    b = None
    try:
        ca = a.client("tea")
        db = unique_name("shared")
        ca.create_image_db(db)
        from_a = [ca.add(db, f"a{i}", image_server.url(n)) for i, n in enumerate(images.good[:3])]
        b = start(tmp_path, "b", url)
        cb = b.client("core")
        expect_error(cb.create_image_db, db, status=400, code="InvalidParameter")
        assert [r["DataId"] for r in cb.list_all(db, limit=1, order="ASC")] == from_a
        top = cb.matches(db, image_server.url(images.good[1]), limit=1)[0]
        assert (top["DataId"], top["Score"]) == (from_a[1], 10.0)
        from_b = cb.add(db, "b0", image_server.url(images.good[4]))
        assert from_b > from_a[-1]
        assert [r["DataId"] for r in ca.list_all(db, order="ASC")] == from_a + [from_b]
        ca.delete_image_db(db)
        assert db not in cb.db_names()
    finally:
        assert a.terminate() == 0
        if b is not None:
            assert b.terminate() == 0


def test_postgres_down_is_503_and_the_server_recovers(tmp_path, image_server, images):
    """PostgreSQL stopped under a running server: requests that need the store get 503
    ServiceUnavailable (quickly, no crash), /readyz says not ready; started again, the same
    server answers again by itself, and nothing acknowledged before was lost."""
    own = PgServer(tmp_path / "pg")  # its own server, to stop and start
    srv = None
    try:
        srv = start(tmp_path, "data", own.store_url())
        c = srv.client("tea")
        db = unique_name("outage")
        c.create_image_db(db)
        before = [c.add(db, f"e{i}", image_server.url(n)) for i, n in enumerate(images.good[:3])]
        assert readyz(srv.port)[0] == 200

        own.stop()
        t0 = time.monotonic()
        expect_error(c.list_images, db, status=503, code="ServiceUnavailable")
        expect_error(c.create_image_db, unique_name(), status=503, code="ServiceUnavailable")
        expect_error(c.add_image, db, "late", image_server.url(images.good[5]),
                     status=503, code="ServiceUnavailable")
        assert time.monotonic() - t0 < 20, "503s come quickly"
        status, body = readyz(srv.port)
        assert status == 503 and body["Store"] != "open", body
        assert srv.proc.poll() is None, "the server is still running"

        own.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                listed = c.list_all(db, order="ASC")
                break
            except Exception:  # noqa: BLE001 - retried until the deadline
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert [r["DataId"] for r in listed] == before
        assert readyz(srv.port)[0] == 200
        added = c.add(db, "after", image_server.url(images.good[6]))
        assert added > before[-1]
    finally:
        if srv is not None:
            assert srv.terminate() == 0, srv.stderr()
        own.remove()


def test_same_data_same_answers_on_both_stores(pg, tmp_path, image_server, images):
    """The same images added to a server on the SQLite store and to one on the PostgreSQL
    store: every search answers the same matches with the same Scores (vectors are stored
    bit-exact in both), and listing answers the same records in the same order."""
    sqlite_srv = ServerProcess(tmp_path / "sqlite")
    pg_srv = start(tmp_path, "pg", pg.store_url())
    try:
        clients = [sqlite_srv.client("tea"), pg_srv.client("tea")]
        db = unique_name("same")
        for c in clients:
            c.create_image_db(db)
            for i, name in enumerate(images.good[:16]):
                c.add(db, f"e{i:02d}", image_server.url(name), f"x{i}")
            c.delete_image(db, "e05")

        def answers(c):
            searches = [[(m["EntityId"], m["Score"], m["ExtraData"])
                         for m in c.matches(db, image_server.url(name), limit=10)]
                        for name in images.good[:6] + images.good[20:24]]
            listed = [(r["EntityId"], r["ExtraData"])
                      for r in c.list_all(db, limit=4, order="ASC")]
            return searches, listed, c.list_images(db, limit=1)["Data"]["TotalCount"]

        on_sqlite, on_pg = answers(clients[0]), answers(clients[1])
        assert on_sqlite[2] == on_pg[2] == 15
        assert on_sqlite[1] == on_pg[1]
        assert len(on_sqlite[0]) == 10 and all(len(s) == 10 for s in on_sqlite[0])
        assert on_sqlite[0] == on_pg[0]
    finally:
        assert sqlite_srv.terminate() == 0
        assert pg_srv.terminate() == 0
