"""Backups of a running server (`imgsearch backup DEST`, `imgsearch restore SRC`).

A thread adds images through the SDK without pause; meanwhile `imgsearch backup` copies the
data directory; the adds go on after it, then the server gets `kill -9`. The backup is
restored into a new directory and a server started on it: every add acknowledged before the
backup began is listed with its DataId and found by SearchImage at Score 10 (through the ANN
index, whose snapshot came with the backup); everything it lists was really sent; the
manifest's image count is what it lists. A second backup to the same path and a restore into
a directory that holds a store are refused, and a damaged backup is refused by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import defaultdict

import pytest

from helpers import BINARY, PG_URL_ENV, TENANT_A, ApiClient, ServerProcess

# `imgsearch backup` copies the SQLite store of a data directory; a PostgreSQL store is
# backed up with PostgreSQL's own tools (README).
pytestmark = pytest.mark.skipif(bool(os.environ.get(PG_URL_ENV)),
                                reason="backup/restore is the SQLite store's")

DB = "backedup"
ANN_ARGS = ("--ann-threshold", "20", "--index-snapshot-secs", "1")


def _cli(*args, timeout=120):
    return subprocess.run([str(BINARY), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_backup_while_adding_then_kill_9_and_restore(tmp_path, images, image_server):
    data = tmp_path / "data"
    srv = ServerProcess(data, extra_args=ANN_ARGS)
    client = ApiClient("core", srv.port, TENANT_A, read_timeout_s=30)
    client.create_image_db(DB)
    acked: list[tuple[str, str, str, float]] = []  # entity, DataId, image, ack time
    sent: set[str] = set()
    outcome: dict = {}

    def add_until_killed():
        for i in range(100_000):
            name = images.good[i % len(images.good)]
            entity = f"b{i:05d}"
            sent.add(entity)
            try:
                data_id = client.add(DB, entity, image_server.url(name))
            except Exception as e:  # the kill
                outcome["error"] = repr(e)
                return
            acked.append((entity, data_id, name, time.monotonic()))

    worker = threading.Thread(target=add_until_killed, daemon=True)
    worker.start()
    try:
        time.sleep(3.0)
        began = time.monotonic()
        dest = tmp_path / "backup-1"
        out = _cli("backup", "--data", data, dest)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        ended = time.monotonic()
        time.sleep(1.0)
        assert worker.is_alive(), f"the adds stopped: {outcome}"
        during = [a for a in acked if began <= a[3] <= ended]
    finally:
        srv.kill()
    worker.join(60)
    assert not worker.is_alive()

    before = [a for a in acked if a[3] < began]
    assert len(before) >= 20, f"only {len(before)} adds before the backup"
    assert len(acked) > len(before), "no add was acknowledged after the backup began"
    manifest = json.loads((dest / "backup.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert "imgsearch.db" in paths and any(p.startswith("indexes/") for p in paths), paths
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]

    refused = _cli("backup", "--data", data, dest)
    assert refused.returncode != 0 and "already exists" in refused.stderr, refused.stderr

    restored = tmp_path / "restored"
    out = _cli("restore", dest, "--data", restored)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["images"] == summary["images"]
    refused = _cli("restore", dest, "--data", restored)
    assert refused.returncode != 0 and "already holds a store" in refused.stderr, refused.stderr

    srv = ServerProcess(restored, extra_args=ANN_ARGS)
    try:
        client = ApiClient("tea", srv.port, TENANT_A)
        listed = {r["EntityId"]: r["DataId"] for r in client.list_all(DB, limit=100)}
        lost = [e for e, d, _, _ in before if listed.get(e) != d]
        assert not lost, f"{len(lost)} of {len(before)} adds acknowledged before the backup " \
                         f"are missing after restore: {lost[:5]}"
        assert set(listed) <= sent, sorted(set(listed) - sent)[:5]
        assert len(listed) == summary["images"]
        # Adds acknowledged while the backup ran may or may not be in it, never half.
        print(f"backup: {len(before)} adds before, {len(during)} during "
              f"({sum(e in listed for e, *_ in during)} of them in the backup), "
              f"{summary['images']} images in it")
        by_image = defaultdict(set)
        wanted = {e: n for e, _, n, _ in acked}
        for entity, data_id in listed.items():
            by_image[wanted.get(entity, "?")].add(data_id)
        for name, ids in by_image.items():
            assert name != "?", "a listed image whose add was never acknowledged has no source"
            hits = client.matches(DB, image_server.url(name), limit=min(1000, len(ids) + 20))
            found = {m["DataId"] for m in hits if m["Score"] == 10.0}
            assert ids <= found, f"{name}: {len(ids - found)} of {len(ids)} not found at 10"
        assert "ANN index" in srv.stderr(), srv.stderr()
    finally:
        rc = srv.terminate()
    assert rc == 0, srv.stderr()

    # A damaged backup is refused before anything is written.
    db_file = dest / "imgsearch.db"
    raw = bytearray(db_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    db_file.write_bytes(bytes(raw))
    out = _cli("restore", dest, "--data", tmp_path / "again")
    assert out.returncode != 0 and "damaged" in out.stderr, out.stderr
    assert not (tmp_path / "again" / "imgsearch.db").exists()
