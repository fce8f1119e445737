"""Durability: an AddImage that got a success answer survives `kill -9` of the server.

Rounds (env IMGSEARCH_CRASH_ROUNDS, default 20; seed IMGSEARCH_CRASH_SEED): a thread adds
images in a loop into this round's database and records each DataId whose AddImage
succeeded; after a random 0.3-3 s the server gets SIGKILL; it is restarted on the same data
directory (it must open without repair and answer), and then every acknowledged image must
be listed (Token paging) and found by SearchImage with its own image at Score 10; at most one
unacknowledged record may appear (the add whose answer the kill cut off); new DataIds stay
above every earlier one. Earlier rounds' databases must be unchanged. At the end the server stops on SIGTERM with status 0
and SQLite's integrity_check on the file says ok.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time

from helpers import STYLES, TENANT_A, ApiClient, ServerProcess, v1_request

ROUNDS = int(os.environ.get("IMGSEARCH_CRASH_ROUNDS", "20"))
SEED = int(os.environ.get("IMGSEARCH_CRASH_SEED", str(random.randrange(2**32))))
DISTINCT = 40
MAX_ADDS_PER_ROUND = 2000


def _add_until_killed(client, db, round_no, images, image_server, acked, outcome):
    """Adds distinct images in a loop; records (DataId → EntityId, image name) only after a
    success answer; stops at the first failure (the kill) and notes when it happened."""
    for i in range(MAX_ADDS_PER_ROUND):
        name = images.good[i % DISTINCT]
        entity = f"r{round_no:02d}_{i:04d}"
        try:
            data_id = client.add(db, entity, image_server.url(name), f"round {round_no} #{i}")
        except Exception as e:  # the kill: connection refused / reset / closed
            outcome["error"] = repr(e)
            outcome["error_at"] = time.monotonic()
            return
        acked[data_id] = (entity, name)
    outcome["error"] = "loop ended without an error"
    outcome["error_at"] = time.monotonic()


def test_acknowledged_adds_survive_kill_9(tmp_path, images, image_server):
    rnd = random.Random(SEED)
    ctx = f"(seed {SEED}; rerun with IMGSEARCH_CRASH_SEED={SEED})"
    data_dir = tmp_path / "data"
    srv = ServerProcess(data_dir)
    verified: dict[str, int] = {}
    total_acked = 0
    max_id_before = 0
    t_start = time.monotonic()
    try:
        for round_no in range(ROUNDS):
            style = STYLES[round_no % 2]
            client = ApiClient(style, srv.port, TENANT_A, read_timeout_s=30)
            db = f"crash_{round_no:02d}"
            client.create_image_db(db)
            acked: dict[str, tuple[str, str]] = {}
            outcome: dict = {}
            adder = threading.Thread(target=_add_until_killed, daemon=True,
                                     args=(client, db, round_no, images, image_server, acked, outcome))
            adder.start()
            time.sleep(rnd.uniform(0.3, 3.0))
            killed_at = time.monotonic()
            srv.kill()
            adder.join(60)
            assert not adder.is_alive(), f"round {round_no}: AddImage loop hangs after kill {ctx}"
            assert outcome["error_at"] >= killed_at, (
                f"round {round_no}: AddImage failed before the kill: {outcome['error']} {ctx}\n"
                f"{srv.stderr()}")
            assert acked, f"round {round_no}: no AddImage succeeded before the kill {ctx}"
            # DataIds keep increasing across crashes and restarts: never reused.
            assert min(int(d) for d in acked) > max_id_before, (round_no, ctx)

            # Restart on the same data directory: opens without repair, answers at once.
            srv = ServerProcess(data_dir)
            client = ApiClient(style, srv.port, TENANT_A)
            listed = {r["DataId"]: r for r in client.list_all(db, limit=100)}
            missing = set(acked) - set(listed)
            assert not missing, f"round {round_no}: acknowledged but lost: {sorted(missing)} {ctx}"
            # One add can have been committed while its answer was cut off by the kill.
            extra = set(listed) - set(acked)
            assert len(extra) <= 1, f"round {round_no}: unexpected records {sorted(extra)} {ctx}"
            assert client.list_images(db)["Data"]["TotalCount"] == len(listed)
            limit = 5 + len(listed) // DISTINCT
            for data_id, (entity, name) in acked.items():
                assert listed[data_id]["EntityId"] == entity
                hits = client.matches(db, image_server.url(name), limit=limit)
                assert any(m["DataId"] == data_id and m["Score"] == 10.0 for m in hits), (
                    f"round {round_no}: {data_id} ({name}) not found by SearchImage: {hits} {ctx}")
            for prev_db, count in verified.items():
                assert client.list_images(prev_db)["Data"]["TotalCount"] == count, (prev_db, ctx)
            verified[db] = len(listed)
            max_id_before = max(int(d) for d in listed)
            total_acked += len(acked)
    finally:
        rc = srv.terminate()
    print(f"{ROUNDS} rounds, {total_acked} acknowledged adds, {time.monotonic() - t_start:.1f} s {ctx}")
    assert rc == 0, f"server exited {rc} after SIGTERM; stderr:\n{srv.stderr()}"
    with sqlite3.connect(data_dir / "imgsearch.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_request_replayed_after_kill_9_is_refused(tmp_path):
    """Replay protection survives a crash: requests signed and answered before `kill -9`
    (a write and a read), sent again unchanged to the restarted server, get 400
    SignatureNonceUsed. The nonce journal is what carries them over a crash."""
    srv = ServerProcess(tmp_path / "data")
    try:
        create = v1_request("CreateImageDb", {"Name": "replayed"})
        assert create.send(srv.port).status == 200
        listing = v1_request("ListImageDbs")
        assert listing.send(srv.port).status == 200
        srv.kill()
        srv = ServerProcess(tmp_path / "data")
        for req in (create, listing):
            again = req.send(srv.port)
            assert again.error() == (400, "SignatureNonceUsed"), again.body
        assert ApiClient("core", srv.port, TENANT_A).db_names().count("replayed") == 1
    finally:
        rc = srv.terminate()
    assert rc == 0, srv.stderr()
