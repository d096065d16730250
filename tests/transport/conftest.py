"""TLS contexts shared by the transport tests (certificate in :mod:`tests.transport.peers`)."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import pytest

from tests.transport.peers import TEST_CERT, TEST_KEY


@pytest.fixture
def server_tls() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain only reads files
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_text(TEST_CERT)
        key.write_text(TEST_KEY)
        context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def client_tls() -> ssl.SSLContext:
    return ssl.create_default_context(cadata=TEST_CERT)
