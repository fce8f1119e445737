"""The ANN index through the real SDKs: a database past `--ann-threshold` is served by the
HNSW index, which stays in step with the store across adds, deletes, `kill -9` and restarts.

Crash rounds (env IMGSEARCH_ANN_CRASH_ROUNDS, default 6; seed IMGSEARCH_CRASH_SEED) on ONE
database that crosses the threshold (40) in round 0 and keeps growing: a thread adds images
and deletes earlier ones, recording only acknowledged calls; the server snapshots its index
every second (so kills land before, during and after snapshot writes) and is killed at a
random 1-3 s. After each restart: every acknowledged add is listed and found by SearchImage at
Score 10; no acknowledged delete is listed or found; the index has a snapshot on disk. Then a
clean SIGTERM writes the snapshot and the next start loads it with nothing to replay.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict

from helpers import STYLES, TENANT_A, ApiClient, ServerProcess

ROUNDS = int(os.environ.get("IMGSEARCH_ANN_CRASH_ROUNDS", "6"))
SEED = int(os.environ.get("IMGSEARCH_CRASH_SEED", str(random.randrange(2**32))))
ANN_ARGS = ("--ann-threshold", "40", "--index-snapshot-secs", "1")
DB = "annbig"
MAX_OPS_PER_ROUND = 400


def _work_until_killed(client, round_no, images, image_server, state, outcome):
    """Adds (and every 6th step deletes an earlier live entity); records each call only
    after its success answer; a call the kill cut off is 'uncertain'."""
    rnd = random.Random(round_no)
    for i in range(MAX_OPS_PER_ROUND):
        if i % 6 == 5 and state["live"]:
            entity = rnd.choice(sorted(state["live"]))
            try:
                client.delete_image(DB, entity)
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
            data_id = client.add(DB, entity, image_server.url(name))
        except Exception as e:
            state["uncertain"].add(entity)
            outcome["error"], outcome["error_at"] = repr(e), time.monotonic()
            return
        state["live"][entity] = (data_id, name)
    outcome["error"], outcome["error_at"] = "loop ended without an error", time.monotonic()


def _snapshot_dirs(data_dir):
    root = data_dir / "indexes"
    return [d for d in root.iterdir() if (d / "snapshot.json").is_file()] if root.is_dir() else []


def _check(client, state, image_server, ctx):
    listed = {r["EntityId"]: r["DataId"] for r in client.list_all(DB, limit=100)}
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
        hits = client.matches(DB, image_server.url(name), limit=min(1000, len(ids) + 20))
        exact = {m["DataId"] for m in hits if m["Score"] == 10.0}
        assert ids <= exact, (
            f"{name}: {len(ids - exact)} of {len(ids)} stored copies not found at Score 10 "
            f"({len(hits)} hits) {ctx}")
        deleted_ids |= {m["DataId"] for m in hits} - set(listed.values())
    assert not deleted_ids, f"deleted images still found: {sorted(deleted_ids)} {ctx}"
    return listed


def test_ann_index_stays_in_step_through_kill_9(tmp_path, images, image_server):
    rnd = random.Random(SEED)
    ctx = f"(seed {SEED}; rerun with IMGSEARCH_CRASH_SEED={SEED})"
    data_dir = tmp_path / "data"
    srv = ServerProcess(data_dir, extra_args=ANN_ARGS)
    state = {"live": {}, "deleted": set(), "uncertain": set()}
    try:
        ApiClient("tea", srv.port, TENANT_A).create_image_db(DB)
        for round_no in range(ROUNDS):
            client = ApiClient(STYLES[round_no % 2], srv.port, TENANT_A, read_timeout_s=30)
            outcome: dict = {}
            worker = threading.Thread(target=_work_until_killed, daemon=True,
                                      args=(client, round_no, images, image_server, state, outcome))
            worker.start()
            time.sleep(rnd.uniform(1.0, 3.0))
            killed_at = time.monotonic()
            srv.kill()
            worker.join(60)
            assert not worker.is_alive(), f"round {round_no}: worker hangs after kill {ctx}"
            assert outcome["error_at"] >= killed_at, (
                f"round {round_no}: a call failed before the kill: {outcome['error']} {ctx}\n"
                f"{srv.stderr()}")

            srv = ServerProcess(data_dir, extra_args=ANN_ARGS)
            client = ApiClient(STYLES[round_no % 2], srv.port, TENANT_A)
            listed = _check(client, state, image_server, f"round {round_no} {ctx}")
            if len(listed) >= 40:
                assert _snapshot_dirs(data_dir), f"no ANN snapshot with {len(listed)} images {ctx}"
                assert "ANN index" in srv.stderr(), srv.stderr()
        assert len(state["live"]) >= 60, f"too few images to exercise the ANN index {ctx}"

        # A clean stop writes the snapshot; the next start loads it with nothing to replay.
        assert srv.terminate() == 0, srv.stderr()
        srv = ServerProcess(data_dir, extra_args=ANN_ARGS)
        log = srv.stderr()
        assert "ANN index loaded from its snapshot" in log and "added=0 removed=0" in log, log
        _check(ApiClient("core", srv.port, TENANT_A), state, image_server, f"after SIGTERM {ctx}")
    finally:
        rc = srv.terminate()
    assert rc == 0, srv.stderr()
