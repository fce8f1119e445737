"""Fixtures: the test images and their HTTP server, the imgsearch server (built beforehand
by scripts/test.sh), and clients of both official SDKs for two tenants."""

from __future__ import annotations

import collections

import pytest

from helpers import (
    SEEN_REQUEST_IDS,
    STYLES,
    TENANT_A,
    TENANT_B,
    ApiClient,
    ImageServer,
    ImageSet,
    ServerProcess,
)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> ImageSet:
    """The test images (good photos and deliberately bad files), written once."""
    return ImageSet(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def image_server(images) -> ImageServer:
    """Serves `images` on http://127.0.0.1:<port>/img/NAME (plus redirect chains)."""
    srv = ImageServer(images.root)
    yield srv
    srv.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> ServerProcess:
    """One `imgsearch serve --allow-private-urls` for the session, two tenants. At the end
    it gets SIGTERM and must exit 0 (graceful shutdown), and every RequestId any test saw
    must have been unique."""
    srv = ServerProcess(tmp_path_factory.mktemp("data"))
    yield srv
    rc = srv.terminate()
    assert rc == 0, f"server exited {rc} after SIGTERM; stderr:\n{srv.stderr()}"
    dupes = [rid for rid, n in collections.Counter(SEEN_REQUEST_IDS).items() if n > 1]
    assert not dupes, f"RequestIds seen more than once: {dupes[:10]}"


@pytest.fixture(params=STYLES)
def client(request, server) -> ApiClient:
    """Tenant A through each SDK in turn (tests using it run once per SDK)."""
    return ApiClient(request.param, server.port, TENANT_A)


@pytest.fixture
def client_b(client, server) -> ApiClient:
    """Tenant B through the same SDK as `client`."""
    return ApiClient(client.style, server.port, TENANT_B)


@pytest.fixture(scope="session")
def tea(server) -> ApiClient:
    return ApiClient("tea", server.port, TENANT_A)


@pytest.fixture(scope="session")
def core(server) -> ApiClient:
    return ApiClient("core", server.port, TENANT_A)
