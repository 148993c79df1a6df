"""Mutual TLS refusals, seen by the official client (API.md 2.8). Run with OPENSPINE_MTLS=1."""

from __future__ import annotations

import pytest
import requests
from conftest import CERTS, MTLS, PASSWORD, SHARED_KEY
from mesh_client import MeshClient

pytestmark = pytest.mark.skipif(not MTLS, reason="only when the suite runs over mutual TLS (OPENSPINE_MTLS=1)")


def _client(mesh_url: str, **tls) -> MeshClient:
    return MeshClient(mesh_url, "X26ABC1", PASSWORD, shared_key=SHARED_KEY.encode(), timeout=10, max_retries=0, **tls)


def test_a_trusted_client_certificate_is_served(mesh_url: str):
    with _client(mesh_url, cert=CERTS["client"], verify=CERTS["ca"]) as client:
        client.handshake()
        assert client.list_messages() == []


def test_a_client_without_a_certificate_is_refused_at_the_handshake(mesh_url: str):
    with _client(mesh_url, verify=CERTS["ca"]) as client, pytest.raises(requests.exceptions.ConnectionError):
        client.handshake()


def test_a_certificate_from_an_untrusted_ca_is_refused(mesh_url: str):
    with _client(mesh_url, cert=CERTS["rogue_client"], verify=CERTS["ca"]) as client, pytest.raises(
        requests.exceptions.ConnectionError
    ):
        client.handshake()


def test_the_server_certificate_is_checked_by_the_client(mesh_url: str, tmp_path):
    # A client that trusts only another CA refuses the server: the certificate is real TLS.
    with _client(mesh_url, cert=CERTS["client"], verify=True) as client, pytest.raises(
        requests.exceptions.SSLError
    ):
        client.handshake()
