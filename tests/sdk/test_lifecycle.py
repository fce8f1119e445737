"""Server life cycle: graceful shutdown under load, data surviving a restart, and the
optional per-database cap (`--max-images-per-db`)."""

from __future__ import annotations

import threading
import time

from helpers import STYLES, TENANT_A, TENANT_B, ApiCallError, ApiClient, ServerProcess, expect_error


def test_sigterm_finishes_in_flight_requests(tmp_path, images, image_server):
    """SIGTERM while 6 threads keep adding: every request either gets its success answer
    or never reaches the server (connection refused/closed) — no error answers; the server
    exits 0, and after a restart exactly the acknowledged images are there, for both
    tenants, with their databases."""
    data = tmp_path / "data"
    srv = ServerProcess(data)
    dbs = {}
    for t in (TENANT_A, TENANT_B):
        c = ApiClient("core", srv.port, t)
        c.create_image_db("graceful")
        dbs[t.key_id] = c
    acked: dict[str, set] = {TENANT_A.key_id: set(), TENANT_B.key_id: set()}
    api_errors = []
    lock = threading.Lock()

    def worker(n):
        tenant = (TENANT_A, TENANT_B)[n % 2]
        c = ApiClient(STYLES[n % 2], srv.port, tenant, read_timeout_s=60)
        for i in range(500):
            try:
                did = c.add("graceful", f"w{n}_{i}", image_server.url(images.good[(n * 7 + i) % 40]))
            except ApiCallError as e:
                with lock:
                    api_errors.append(e)
                return
            except Exception:  # connection refused / closed: the server is gone
                return
            with lock:
                acked[tenant.key_id].add(did)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    rc = srv.terminate(timeout=30)
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert rc == 0, f"exit status {rc}; stderr:\n{srv.stderr()}"
    assert not api_errors, api_errors[:3]
    assert all(acked.values()), "no add succeeded before SIGTERM"

    srv = ServerProcess(data)
    try:
        for t in (TENANT_A, TENANT_B):
            c = ApiClient("tea", srv.port, t)
            assert "graceful" in c.db_names()
            listed = {r["DataId"] for r in c.list_all("graceful")}
            assert listed == acked[t.key_id], (
                f"lost {sorted(acked[t.key_id] - listed)[:5]}, "
                f"unacknowledged {sorted(listed - acked[t.key_id])[:5]}")
    finally:
        assert srv.terminate() == 0


def test_max_images_per_db(tmp_path, images, image_server):
    """With --max-images-per-db 3 the fourth AddImage to a database → 400
    InvalidParameter; other databases are not affected; after a DeleteImage there is room
    again."""
    srv = ServerProcess(tmp_path / "data", extra_args=["--max-images-per-db", "3"])
    try:
        for style in STYLES:
            c = ApiClient(style, srv.port, TENANT_A)
            db, other = f"cap_{style}", f"cap_other_{style}"
            c.create_image_db(db)
            c.create_image_db(other)
            for i in range(3):
                c.add(db, f"e{i}", image_server.url(images.good[i]))
            expect_error(c.add_image, db, "e3", image_server.url(images.good[3]),
                         status=400, code="InvalidParameter")
            c.add(other, "e0", image_server.url(images.good[3]))
            assert c.list_images(db)["Data"]["TotalCount"] == 3
            c.delete_image(db, "e0")
            c.add(db, "e3", image_server.url(images.good[3]))
            assert c.list_images(db)["Data"]["TotalCount"] == 3
    finally:
        assert srv.terminate() == 0


def test_tenant_quotas(tmp_path, images, image_server):
    """--max-databases-per-tenant 2 and --max-images-per-tenant 3, through both SDKs: the
    third CreateImageDb of a key → 403 QuotaExceeded.Databases, an add that would pass 3
    images over the key's databases together → 403 QuotaExceeded.Images; the other tenant
    is not affected; deleting frees room; nothing already stored is touched."""
    srv = ServerProcess(tmp_path / "data", extra_args=[
        "--max-databases-per-tenant", "2", "--max-images-per-tenant", "3"])
    try:
        a = ApiClient("tea", srv.port, TENANT_A)
        core_a = ApiClient("core", srv.port, TENANT_A)
        b = ApiClient("core", srv.port, TENANT_B)
        a.create_image_db("q_one")
        core_a.create_image_db("q_two")
        for c in (a, core_a):
            e = expect_error(c.create_image_db, "q_three", status=403, code="QuotaExceeded.Databases")
            assert "--max-databases-per-tenant" in e.message and "DeleteImageDb" in e.message
        b.create_image_db("q_one")
        b.create_image_db("q_two")
        a.add("q_one", "e0", image_server.url(images.good[0]))
        a.add("q_one", "e1", image_server.url(images.good[1]))
        core_a.add("q_two", "e2", image_server.url(images.good[2]))
        for c in (a, core_a):
            e = expect_error(c.add_image, "q_two", "e3", image_server.url(images.good[3]),
                             status=403, code="QuotaExceeded.Images")
            assert "--max-images-per-tenant" in e.message
        for i in range(3):
            b.add("q_one", f"b{i}", image_server.url(images.good[i]))
        assert a.list_images("q_one")["Data"]["TotalCount"] == 2
        assert a.list_images("q_two")["Data"]["TotalCount"] == 1
        a.delete_image_db("q_two")
        a.create_image_db("q_three")
        a.add("q_three", "e3", image_server.url(images.good[3]))
        assert {r["EntityId"] for r in a.list_all("q_one")} == {"e0", "e1"}
    finally:
        assert srv.terminate() == 0
