"""`--tls`: https with a CA made at start that unmodified clients trust through REQUESTS_CA_BUNDLE."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import requests
from cryptography import x509
from emulator_fixtures import API_VERSION, bearer_session


@pytest.fixture
def tls_emu(emulator_factory, tmp_path: Path):
    return emulator_factory(scale=0.001, tls=True, tls_dir=tmp_path / "tls")


def test_https_with_the_ca_file_trusted_through_the_environment(tls_emu, tmp_path, monkeypatch) -> None:
    assert tls_emu.base_url.startswith("https://127.0.0.1:")
    assert tls_emu.ca_file == str(tmp_path / "tls" / "salesforce-emulator-ca.pem")
    assert tls_emu.ca_file.endswith(".pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_emu.ca_file)
    response = requests.get(tls_emu.base_url + "/services/data/", timeout=30)
    assert response.status_code == 200
    http = bearer_session(tls_emu)
    assert http.get(f"{tls_emu.base_url}/services/data/v{API_VERSION}/limits", timeout=30).status_code == 200
    assert tls_emu.start_line().endswith(f" ca_file={tls_emu.ca_file}")


def test_untrusted_clients_are_refused(tls_emu, monkeypatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_emu.base_url + "/services/data/", timeout=30)


def test_certificate_names_loopback(tls_emu) -> None:
    pem = Path(tls_emu.tls_material.cert_file).read_bytes()
    certificate = x509.load_pem_x509_certificates(pem)[0]
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert {str(address) for address in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    context = ssl.create_default_context(cafile=tls_emu.ca_file)
    with (
        socket.create_connection(("127.0.0.1", tls_emu.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as secure,
    ):
        assert secure.version() in ("TLSv1.2", "TLSv1.3")


def test_a_plain_http_client_does_not_break_the_server(tls_emu, monkeypatch) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(tls_emu.base_url.replace("https://", "http://") + "/services/data/", timeout=10)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_emu.ca_file)
    assert requests.get(tls_emu.base_url + "/services/data/", timeout=30).status_code == 200


def test_plain_http_by_default(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001)
    assert emu.base_url.startswith("http://127.0.0.1:")
    assert emu.ca_file is None
    assert "ca_file" not in emu.start_line()
