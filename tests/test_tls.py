"""Contract §1: ``presence serve --tls-cert FILE --tls-key FILE`` serves HTTPS itself.

The certificate is made by the test, for 127.0.0.1, by a throwaway CA (``trustme``)
that only the test's client trusts.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
import trustme

from tests.support import payloads
from tests.support.api import API_AUTH, HOOK_AUTH
from tests.support.server import ServerProcess, presence_environment, run_presence

TIMEOUT = aiohttp.ClientTimeout(total=10)
AT = 1_763_720_130_123


@dataclass(frozen=True, slots=True)
class Certificate:
    cert: Path
    key: Path
    client: ssl.SSLContext  # trusts the CA that signed ``cert``


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return Certificate(cert, key, client)


def a_connection(uid: str) -> payloads.Body:
    session = payloads.device(f"{uid}-s", connected_at=AT)
    return payloads.connection(uid, "connected", AT, session, connections=[session])


def https_server(certificate: Certificate, tmp_path: Path) -> ServerProcess:
    environment = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}")
    return ServerProcess(
        environment,
        tmp_path,
        args=["--tls-cert", str(certificate.cert), "--tls-key", str(certificate.key)],
        name="tls",
        client_ssl=certificate.client,
    )


async def test_serve_answers_https_with_the_given_certificate(certificate: Certificate, tmp_path: Path) -> None:
    """§1: with the CA trusted, /hook (Basic Auth) and the query API answer over HTTPS."""
    with https_server(certificate, tmp_path) as server:
        server.start()
        assert server.url.startswith("https://")
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            async with session.post(
                f"{server.url}/hook",
                data=orjson.dumps(a_connection("tls-user")),
                headers={"Authorization": HOOK_AUTH, "Content-Type": "Application/json"},
                ssl=certificate.client,
            ) as response:
                assert response.status == 200, server.describe()
                assert await response.json() == {"status": "accepted"}
            async with session.get(
                f"{server.url}/users/tls-user/presence", headers={"Authorization": API_AUTH}, ssl=certificate.client
            ) as response:
                assert response.status == 200, server.describe()
                presence = await response.json()
        assert presence["status"] == "online"
        assert [c["session_id"] for c in presence["connections"]] == ["tls-user-s"]
        assert server.terminate() == 0, server.describe()
    assert f"https://127.0.0.1:{server.port}" in server.stderr()


async def test_serve_with_tls_refuses_plain_http_and_untrusted_clients(
    certificate: Certificate, tmp_path: Path
) -> None:
    """§1: the TLS port speaks only TLS: a plain-HTTP request gets no answer; nor does a client that
    does not trust the certificate. Neither stores anything."""
    with https_server(certificate, tmp_path) as server:
        server.start()
        plain = server.url.replace("https://", "http://", 1)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.post(
                    f"{plain}/hook", data=orjson.dumps(a_connection("plain-user")), headers={"Authorization": HOOK_AUTH}
                ) as response:
                    pytest.fail(f"plain HTTP was answered with {response.status}")
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.post(
                    f"{server.url}/hook",
                    data=orjson.dumps(a_connection("untrusting-user")),
                    headers={"Authorization": HOOK_AUTH},
                ) as response:
                    pytest.fail(f"an untrusted certificate was accepted: {response.status}")
            # The server is still up and well, and stored neither event.
            for uid in ("plain-user", "untrusting-user"):
                async with session.get(
                    f"{server.url}/users/{uid}/presence", headers={"Authorization": API_AUTH}, ssl=certificate.client
                ) as response:
                    assert response.status == 404, await response.text()
        assert server.terminate() == 0, server.describe()


@pytest.mark.parametrize("flag", ["--tls-cert", "--tls-key"])
async def test_one_tls_flag_without_the_other_fails_with_one_line(
    certificate: Certificate, tmp_path: Path, flag: str
) -> None:
    """§1: --tls-cert without --tls-key (or the reverse) stops serve with one line, before any database work."""
    database = tmp_path / "never.db"
    path = certificate.cert if flag == "--tls-cert" else certificate.key
    result = await run_presence(
        ["serve", "--port", "0", flag, str(path)],
        presence_environment(f"sqlite+aiosqlite:///{database}"),
        tmp_path,
        time_limit=30,
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--tls-cert and --tls-key go together" in lines[0]
    assert not database.exists()


async def test_an_unreadable_certificate_fails_with_one_line(certificate: Certificate, tmp_path: Path) -> None:
    """§1: a certificate file that is missing or not a certificate, or a key that is not a key, is one
    line naming that file (and its flag), not a traceback."""
    database = tmp_path / "never.db"
    environment = presence_environment(f"sqlite+aiosqlite:///{database}")
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("not a key\n")
    missing = tmp_path / "missing.pem"
    cases = (
        (missing, certificate.key, "--tls-cert", missing),
        (certificate.cert, missing, "--tls-key", missing),
        (not_a_key, certificate.key, "--tls-cert", not_a_key),
        (certificate.cert, not_a_key, "--tls-key", not_a_key),
        (certificate.key, certificate.key, "--tls-cert", certificate.key),  # a key where the chain goes
    )
    for cert, key, flag, named in cases:
        result = await run_presence(
            ["serve", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)], environment, tmp_path
        )
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"{flag}/PRESENCE_TLS_{flag[6:].upper()} {named}" in lines[0], (cert, key, lines[0])
    assert not database.exists()
