"""The ANN index through the real SDKs: a database past `--ann-threshold` is served by the
HNSW index, which stays in step with the store across adds, deletes, `kill -9` and restarts.

Crash rounds (env IMGSEARCH_ANN_CRASH_ROUNDS, default 6; seed IMGSEARCH_CRASH_SEED) on two
databases that cross the threshold (40) in round 0 and keep growing: one with both
descriptors (the default: a semantic and a copy-detection HNSW index) and one created with
`Descriptors=copy` (whose only index is the copy one, so its search cannot lean on the
semantic index). One thread per database adds images and deletes earlier ones, recording only
acknowledged calls; the server snapshots its indexes every second (so kills land before,
during and after snapshot writes) and is killed at a random 1-3 s. After each restart: every
acknowledged add is listed and found by SearchImage at Score 10; no acknowledged delete is
listed or found; every index has a snapshot on disk. Then a clean SIGTERM writes the
snapshots and the next start loads each with nothing to replay.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict

from helpers import STYLES, TENANT_A, ApiClient, ServerProcess, v1_request

ROUNDS = int(os.environ.get("IMGSEARCH_ANN_CRASH_ROUNDS", "6"))
SEED = int(os.environ.get("IMGSEARCH_CRASH_SEED", str(random.randrange(2**32))))
ANN_ARGS = ("--ann-threshold", "40", "--index-snapshot-secs", "1")
# Database → its CreateImageDb Descriptors (None: the default, both) and how many HNSW
# indexes (snapshots) it has once past the threshold.
DBS = {"annbig": (None, 2), "anncopy": ("copy", 1)}
MAX_OPS_PER_ROUND = 400


def _create(port, db, descriptors):
    if descriptors is None:
        ApiClient("tea", port, TENANT_A).create_image_db(db)
    else:  # the SDKs' request models do not know our optional parameter
        v1_request("CreateImageDb", {"Name": db, "Descriptors": descriptors}).send(port)


def _work_until_killed(client, db, round_no, images, image_server, state, outcome):
    """Adds (and every 6th step deletes an earlier live entity); records each call only
    after its success answer; a call the kill cut off is 'uncertain'."""
    rnd = random.Random(round_no)
    for i in range(MAX_OPS_PER_ROUND):
        if i % 6 == 5 and state["live"]:
            entity = rnd.choice(sorted(state["live"]))
            try:
                client.delete_image(db, entity)
            except Exception as e:
                state["uncertain"].add(entity)
                outcome["error"], outcome["error_at"] = repr(e), time.monotonic()
                return
            state["deleted"].add(entity)
            state["live"].pop(entity)
            continue
        name = images.good[(round_no * 7 + i) % len(images.good)]
        entity = f"r{round_no:02d}_{i:04d}"
        try:
            data_id = client.add(db, entity, image_server.url(name))
        except Exception as e:
            state["uncertain"].add(entity)
            outcome["error"], outcome["error_at"] = repr(e), time.monotonic()
            return
        state["live"][entity] = (data_id, name)
    outcome["error"], outcome["error_at"] = "loop ended without an error", time.monotonic()


def _snapshots(data_dir):
    """Snapshot files of every ANN index (a database's copy index has its own, in `copy/`)."""
    root = data_dir / "indexes"
    return sorted(root.rglob("snapshot.json")) if root.is_dir() else []


def _check(client, db, state, image_server, ctx):
    listed = {r["EntityId"]: r["DataId"] for r in client.list_all(db, limit=100)}
    for entity, (data_id, _) in state["live"].items():
        if entity in state["uncertain"]:
            continue  # its delete was cut off by the kill
        assert listed.get(entity) == data_id, f"acknowledged add {entity} lost {ctx}"
    for entity in state["deleted"]:
        assert entity not in listed, f"acknowledged delete of {entity} undone {ctx}"
    extra = set(listed) - set(state["live"]) - state["uncertain"]
    assert not extra, f"records nobody added: {sorted(extra)} {ctx}"
    # Records the kill left in doubt are whatever the store says; adopt that.
    for entity in state["uncertain"]:
        state["deleted"].discard(entity)
        if entity in listed and entity not in state["live"]:
            state["live"][entity] = (listed[entity], None)
        elif entity not in listed:
            state["live"].pop(entity, None)
            state["deleted"].add(entity)
    state["uncertain"].clear()

    by_image = defaultdict(set)
    for data_id, name in state["live"].values():
        if name is not None:
            by_image[name].add(data_id)
    deleted_ids = set()
    for name, ids in by_image.items():
        hits = client.matches(db, image_server.url(name), limit=min(1000, len(ids) + 20))
        exact = {m["DataId"] for m in hits if m["Score"] == 10.0}
        assert ids <= exact, (
            f"{db}/{name}: {len(ids - exact)} of {len(ids)} stored copies not found at Score 10 "
            f"({len(hits)} hits) {ctx}")
        deleted_ids |= {m["DataId"] for m in hits} - set(listed.values())
    assert not deleted_ids, f"deleted images still found: {sorted(deleted_ids)} {ctx}"
    return listed


def test_ann_index_stays_in_step_through_kill_9(tmp_path, images, image_server):
    rnd = random.Random(SEED)
    ctx = f"(seed {SEED}; rerun with IMGSEARCH_CRASH_SEED={SEED})"
    data_dir = tmp_path / "data"
    srv = ServerProcess(data_dir, extra_args=ANN_ARGS)
    states = {db: {"live": {}, "deleted": set(), "uncertain": set()} for db in DBS}
    try:
        for db, (descriptors, _) in DBS.items():
            _create(srv.port, db, descriptors)
        for round_no in range(ROUNDS):
            client = ApiClient(STYLES[round_no % 2], srv.port, TENANT_A, read_timeout_s=30)
            workers = []
            for db in DBS:
                outcome: dict = {}
                worker = threading.Thread(
                    target=_work_until_killed, daemon=True,
                    args=(client, db, round_no, images, image_server, states[db], outcome))
                worker.start()
                workers.append((db, worker, outcome))
            time.sleep(rnd.uniform(1.0, 3.0))
            killed_at = time.monotonic()
            srv.kill()
            for db, worker, outcome in workers:
                worker.join(60)
                assert not worker.is_alive(), f"round {round_no}: {db} worker hangs {ctx}"
                assert outcome["error_at"] >= killed_at, (
                    f"round {round_no}: a call on {db} failed before the kill: "
                    f"{outcome['error']} {ctx}\n{srv.stderr()}")

            srv = ServerProcess(data_dir, extra_args=ANN_ARGS)
            client = ApiClient(STYLES[round_no % 2], srv.port, TENANT_A)
            want_snapshots = 0
            for db, (_, indexes) in DBS.items():
                listed = _check(client, db, states[db], image_server, f"round {round_no} {ctx}")
                if len(listed) >= 40:
                    want_snapshots += indexes
            if want_snapshots:
                found = _snapshots(data_dir)
                assert len(found) >= want_snapshots, (
                    f"{len(found)} ANN snapshots on disk, {want_snapshots} expected: {found} {ctx}")
                assert "ANN index" in srv.stderr(), srv.stderr()
        for db, state in states.items():
            assert len(state["live"]) >= 60, f"too few images in {db} for the ANN index {ctx}"

        # A clean stop writes the snapshots; the next start loads each with nothing to replay.
        assert srv.terminate() == 0, srv.stderr()
        srv = ServerProcess(data_dir, extra_args=ANN_ARGS)
        loaded = [line for line in srv.stderr().splitlines() if "loaded from its snapshot" in line]
        want = sum(indexes for _, indexes in DBS.values())
        assert len(loaded) == want, srv.stderr()
        assert all("added=0 removed=0" in line for line in loaded), srv.stderr()
        assert sum("kind=Copy" in line for line in loaded) == len(DBS), srv.stderr()
        client = ApiClient("core", srv.port, TENANT_A)
        for db, state in states.items():
            _check(client, db, state, image_server, f"after SIGTERM {ctx}")
    finally:
        rc = srv.terminate()
    assert rc == 0, srv.stderr()
