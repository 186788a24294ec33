"""conf/Containerfile. No container builder can build it on these machines (the docker
client has no engine, and no base image can be pulled), so what can be tested is: the file
parses into instructions an OCI builder knows, it runs as a user that is not root with the
data and the policy on volumes and a HEALTHCHECK on /healthz, everything it copies exists,
and its entry point, `sealgate serve` from the installed wheel in a clean virtualenv with
the image's config, serves and passes that HEALTHCHECK."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.ports import free_port

REPO = Path(__file__).resolve().parent.parent
CONTAINERFILE = REPO / "conf" / "Containerfile"
IMAGE_CONFIG = REPO / "conf" / "sealgate.container.toml"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                "SHELL", "MAINTAINER"}
Instruction = tuple[str, str]


def parse(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) in order: comments dropped, continued lines joined."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        name, _, arguments = whole.partition(" ")
        found.append((name, arguments.strip()))
    assert not pending, "the file ends inside a continued instruction"
    return found


def instructions(name: str) -> list[str]:
    return [args for kind, args in parse(CONTAINERFILE.read_text()) if kind == name]


def final_stage() -> list[Instruction]:
    parsed = parse(CONTAINERFILE.read_text())
    last_from = max(i for i, (kind, _) in enumerate(parsed) if kind == "FROM")
    return parsed[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def image_config() -> dict[str, dict[str, object]]:
    return tomllib.loads(IMAGE_CONFIG.read_text())


def healthcheck_command() -> list[str]:
    [healthcheck] = instructions("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert all(o.startswith("--") for o in options.split()), options
    return exec_form(command)


def test_every_instruction_is_one_an_oci_builder_knows() -> None:
    parsed = parse(CONTAINERFILE.read_text())
    assert parsed[0][0] == "FROM"
    assert [kind for kind, _ in parsed if kind not in INSTRUCTIONS] == []


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    users = [args for kind, args in final_stage() if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    kinds = [kind for kind, _ in final_stage()]
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    assert "useradd --system --uid 10025 --user-group" in " ".join(instructions("RUN"))


def test_data_and_policy_are_volumes_where_the_image_config_points() -> None:
    [volumes] = instructions("VOLUME")
    config = image_config()
    assert exec_form(volumes) == [config["storage"]["dir"], config["policy"]["dir"]]


def test_the_default_config_is_the_image_config() -> None:
    copied = [args.split() for args in instructions("COPY")]
    assert ["conf/sealgate.container.toml", "/etc/sealgate/sealgate.toml"] in copied
    assert "SEALGATE_CONFIG=/etc/sealgate/sealgate.toml" in " ".join(instructions("ENV"))


def test_the_healthcheck_asks_healthz_on_the_metrics_port() -> None:
    metrics_port = str(image_config()["metrics"]["listen"]).rpartition(":")[2]
    assert f"http://127.0.0.1:{metrics_port}/healthz" in " ".join(healthcheck_command())


def test_the_exposed_ports_are_the_configured_ones() -> None:
    config = image_config()
    ports = {str(config[s]["listen"]).rpartition(":")[2] for s in ("smtp", "pickup", "metrics")}
    assert set(" ".join(instructions("EXPOSE")).split()) == ports


def test_everything_copied_from_the_build_context_exists() -> None:
    for args in instructions("COPY"):
        if args.startswith("--from="):
            continue
        *sources, _destination = args.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_the_entry_point_is_sealgate_serve() -> None:
    [entry], [command] = instructions("ENTRYPOINT"), instructions("CMD")
    assert exec_form(entry) + exec_form(command) == ["sealgate", "serve"]


# -- the entry point, from the installed wheel ------------------------------------------------

def run(*command: str | Path, cwd: Path) -> None:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's install step: the wheel into a fresh virtualenv; its bin/."""
    work = tmp_path_factory.mktemp("image")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist", REPO,
        cwd=work)
    [wheel] = (work / "dist").glob("sealgate-*.whl")
    run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    run(work / "venv" / "bin" / "pip", "install", "-q", wheel, cwd=work)
    return work / "venv" / "bin"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def image_like(installed: Path, tmp_path: Path) -> Iterator[tuple[int, int, int]]:
    """The image's config and volumes under TMP_PATH (loopback ports instead of 0.0.0.0),
    the policy copied as the image copies it, and its ENTRYPOINT + CMD run with its ENV."""
    data, policies, empty = tmp_path / "data", tmp_path / "policies", tmp_path / "empty"
    shutil.copytree(REPO / "policies", policies, ignore=shutil.ignore_patterns("__init__.py"))
    empty.mkdir()
    ports = {key: free_port() for key in ("smtp", "pickup", "metrics")}
    text = IMAGE_CONFIG.read_text().replace("/var/lib/sealgate", str(data)).replace(
        "/etc/sealgate/policies", str(policies))
    for key, default in (("smtp", 2525), ("pickup", 8025), ("metrics", 9125)):
        text = text.replace(f'"0.0.0.0:{default}"', f'"127.0.0.1:{ports[key]}"')
    config = tmp_path / "sealgate.toml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEALGATE_CONFIG")}
    env.update(SEALGATE_CONFIG=str(config), PATH=f"{installed}:{env['PATH']}",
               PYTHONUNBUFFERED="1")
    entry = exec_form(instructions("ENTRYPOINT")[0]) + exec_form(instructions("CMD")[0])
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(entry, cwd=empty, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 40
    while not all(listening(p) for p in ports.values()):
        assert process.poll() is None and time.monotonic() < deadline, (
            (tmp_path / "serve.log").read_text())
        time.sleep(0.1)
    yield ports["smtp"], ports["pickup"], ports["metrics"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    log.close()


def test_the_entry_point_serves_and_passes_the_healthcheck(
        image_like: tuple[int, int, int], installed: Path) -> None:
    _, _, metrics_port = image_like
    command = [c.replace("127.0.0.1:9125", f"127.0.0.1:{metrics_port}")
               for c in healthcheck_command()]
    command[0] = str(installed / command[0])  # "python" on the image's PATH: the venv's
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, shlex.join(command) + "\n" + result.stderr
    deadline = time.monotonic() + 20
    while (ready := httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=10)
           ).status_code != 200:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.2)


def test_a_healthcheck_with_nothing_listening_fails(installed: Path) -> None:
    command = [c.replace("127.0.0.1:9125", f"127.0.0.1:{free_port()}")
               for c in healthcheck_command()]
    command[0] = str(installed / command[0])
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0


def test_the_image_config_leaves_no_key_unknown() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "config", "check", "--json",
                             "--config", str(IMAGE_CONFIG)], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    report = json.loads(result.stdout)
    # On this machine the volumes' paths do not exist: only those may be reported.
    assert all(re.match(r"(storage|policy)\.dir: ", e) for e in report["errors"]), report
