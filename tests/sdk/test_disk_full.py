"""Disk full: the server's data directory on a small tmpfs of its own (mounted by the test;
it needs root, which the project's machines and CI have). Fill the disk, keep adding through
the SDK: the add that cannot be stored gets 507 InsufficientStorage and a message a person
can act on, reads go on, nothing acknowledged is lost or damaged, and after space is freed
adds work again and a restart finds every acknowledged image (SQLite integrity_check ok)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time

import pytest

from helpers import PG_URL_ENV, TENANT_A, ApiCallError, ApiClient, ServerProcess

# The data directory's disk holds a SQLite store's writes; a PostgreSQL store's are on the
# database server's disk.
pytestmark = pytest.mark.skipif(bool(os.environ.get(PG_URL_ENV)),
                                reason="a full data directory is the SQLite store's case")

MOUNT_MB = 48


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.fail("this test mounts a small tmpfs and needs root (the project's machines "
                    "and CI run as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={MOUNT_MB}m", "tmpfs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt, leave_bytes: int):
    """Writes a filler file leaving about `leave_bytes` free; returns its path."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def add_until_full(c, db, images, image_server, prefix, acked, limit=400):
    """Adds until one is refused; returns that error (fails the test if none is)."""
    for i in range(limit):
        name = images.good[i % len(images.good)]
        try:
            acked[c.add(db, f"{prefix}{i}", image_server.url(name))] = (f"{prefix}{i}", name)
        except ApiCallError as e:
            return e
    pytest.fail(f"{limit} adds on a full disk all succeeded")


def test_a_full_disk_refuses_writes_and_damages_nothing(small_disk, images, image_server):
    data = small_disk / "data"
    # ANN from 4 images, snapshots every second: they too meet the full disk.
    srv = ServerProcess(data, extra_args=["--index-snapshot-secs", "1", "--ann-threshold", "4"])
    acked: dict[str, tuple[str, str]] = {}
    try:
        c = ApiClient("tea", srv.port, TENANT_A)
        core = ApiClient("core", srv.port, TENANT_A)
        c.create_image_db("full")
        for i in range(5):
            name = images.good[i]
            acked[c.add("full", f"pre{i}", image_server.url(name))] = (f"pre{i}", name)

        filler = fill(small_disk, 256 * 1024)
        err = add_until_full(c, "full", images, image_server, "a", acked)
        assert (err.status, err.code) == (507, "InsufficientStorage"), err
        assert "disk is full" in err.message and "not stored" in err.message, err.message
        # The other SDK gets the same answer.
        try:
            core.add("full", "core_x", image_server.url(images.good[0]))
            pytest.fail("an add on a full disk succeeded through the core SDK")
        except ApiCallError as e:
            assert (e.status, e.code) == (507, "InsufficientStorage"), e
        # Reads go on: every acknowledged image is listed, one is found at Score 10.
        listed = {r["DataId"] for r in c.list_all("full")}
        assert listed == set(acked), f"lost {set(acked) - listed}, extra {listed - set(acked)}"
        top = c.matches("full", image_server.url(images.good[1]), limit=3)[0]
        assert top["EntityId"] == "pre1" and float(top["Score"]) >= 9.99, top

        # Space freed: adds work again, without a restart.
        filler.unlink()
        did = c.add("full", "after", image_server.url(images.good[7]))
        acked[did] = ("after", images.good[7])

        # Full again, then a clean stop while full: it still exits (snapshots fail, logged).
        filler = fill(small_disk, 64 * 1024)
        add_until_full(c, "full", images, image_server, "b", acked)
        time.sleep(1.5)  # a snapshot attempt on the full disk
        rc = srv.terminate(timeout=60)
        assert rc == 0, f"exit status {rc} on a full disk; stderr:\n{srv.stderr()[-3000:]}"
        filler.unlink()

        srv = ServerProcess(data)
        c = ApiClient("core", srv.port, TENANT_A)
        listed = {r["DataId"] for r in c.list_all("full")}
        assert listed == set(acked), f"lost {set(acked) - listed}, extra {listed - set(acked)}"
        for did, (entity, name) in list(acked.items())[:: max(1, len(acked) // 8)]:
            top = c.matches("full", image_server.url(name), limit=3)[0]
            assert float(top["Score"]) >= 9.99, (entity, top)
        assert srv.terminate() == 0
    finally:
        if srv.proc.poll() is None:
            srv.kill()
    con = sqlite3.connect(data / "imgsearch.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == len(acked)
    finally:
        con.close()
