"""Loopback HTTP(S) servers shared by the fetch and source tests."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from tests.inputs.helpers import LoopbackServer, TlsSetup


@pytest.fixture(scope="session")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


@pytest.fixture(scope="session")
def tls() -> Iterator[TlsSetup]:
    """An HTTPS server whose certificate is valid for ``images.test`` only, and a client trusting its CA."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("images.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with LoopbackServer(server_context) as running:
        yield TlsSetup(running, client_context)
