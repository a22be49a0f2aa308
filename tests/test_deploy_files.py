"""The deployment files (deploy/, Dockerfile, .env.example, the README «Развёртывание») stay
consistent with the code: the `mcu` commands they run exist and accept those arguments, the
MCU_* variables they set are settings, the files parse, and the paths nginx forwards are the
paths the program serves."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.cli import UsageError, build_parser
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
NGINX_HOST = DEPLOY / "nginx" / "mcu.conf"
NGINX_COMPOSE = DEPLOY / "nginx" / "compose.conf"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

DATA_DIR = "/var/lib/mcu"
ENV_FILE = "/etc/mcu/mcu.env"


def deployment_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Развёртывание\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def text_sources() -> dict[str, str]:
    sources = {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
               for path in sorted(DEPLOY.rglob("*")) if path.is_file()}
    sources["Dockerfile"] = DOCKERFILE.read_text(encoding="utf-8")
    sources[".env.example"] = ENV_EXAMPLE.read_text(encoding="utf-8")
    sources["README.md «Развёртывание»"] = deployment_section()
    return sources


def cli_commands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(actions[0].choices)  # type: ignore[attr-defined]


# `mcu` starting a command: at a line's start, after a path (…/bin/mcu), a shell operator or
# a backquote (prose); not the user or the database named mcu (`createdb --owner=mcu mcu`).
MCU_START = re.compile(r"(^|bin/|[;&|(]\s*|`)mcu[ \t]+")


def mcu_calls() -> list[tuple[str, list[str], bool]]:
    """(where, argv, complete) of every `mcu …` in the deployment files, the commands of the
    compose services and the Dockerfile's CMD. `complete`: a command line, not a mention in
    prose (`mcu restore` names the command without its FILE)."""
    calls: list[tuple[str, list[str], bool]] = []
    for where, text in text_sources().items():
        for line in text.splitlines():
            line = re.sub(r"\$\([^)]*\)", "X", line.strip())  # $(date +%F) → X
            for match in MCU_START.finditer(line):
                prose = match.group(1) == "`"
                rest = re.split(r"`|&&|;|\||\s#|\)" if not prose else r"`", line[match.end():])[0]
                words = shlex.split(rest.replace("'", ""))
                if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
                    calls.append((where, words, not prose))
    for name, service in compose()["services"].items():
        if "command" in service:
            calls.append((f"compose.yaml {name}", list(service["command"]), True))
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert cmd is not None
    calls.append(("Dockerfile CMD", json.loads(cmd.group(1)), True))
    return calls


def test_every_mcu_command_they_run_exists_with_those_arguments() -> None:
    commands = cli_commands()
    calls = mcu_calls()
    named = {argv[0] for _, argv, _ in calls}
    # The extraction works: the commands an administrator needs are found.
    assert {"serve", "worker", "migrate", "run", "backup", "restore"} <= named
    unknown = sorted(f"{where}: mcu {' '.join(argv)}" for where, argv, _ in calls
                     if not argv[0].startswith("-")
                     and argv[0] not in commands)
    assert not unknown, f"commands the CLI does not have: {unknown}"
    parser = build_parser()
    for where, argv, complete in calls:
        if not complete or argv == ["--help"]:
            continue
        # A systemd template's instance (`%i`) is a port or a number: parse it as one.
        argv = [arg.replace("%i", "8081") for arg in argv]
        try:
            parser.parse_args(argv)
        except UsageError as error:
            pytest.fail(f"{where}: `mcu {' '.join(argv)}` is refused: {error}")


def test_every_mcu_variable_they_name_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    unknown = sorted({f"{where}: {name}" for where, text in text_sources().items()
                      for name in re.findall(r"\bMCU_[A-Z0-9_]*[A-Z0-9]\b", text)
                      if name.removeprefix("MCU_").lower() not in fields})
    assert not unknown, f"not settings (bot/settings.py): {unknown}"


def test_env_example_documents_every_setting_and_loads_as_it_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    missing = sorted(f"MCU_{name.upper()}" for name in Settings.model_fields
                     if not re.search(rf"\bMCU_{name.upper()}=", text))
    assert not missing, f"add to .env.example: {missing}"
    # Copied as the quick start says, with only a token filled in.
    for name in list(__import__("os").environ):
        if name.startswith("MCU_"):
            monkeypatch.delenv(name)
    env = tmp_path / ".env"
    env.write_text(text.replace("MCU_TELEGRAM_TOKEN=\n", "MCU_TELEGRAM_TOKEN=1:x\n"),
                   encoding="utf-8")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.telegram_enabled and not settings.vk_enabled


# ---------------------------------------------------------------------------------------------
# systemd

def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",),
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text(encoding="utf-8"), source=name)
    return parser


def test_systemd_units_parse_and_run_hardened_as_the_mcu_user() -> None:
    names = sorted(path.name for path in UNITS.iterdir())
    assert {"mcu-serve@.service", "mcu-worker@.service", "mcu-migrate.service",
            "mcu-run.service"} <= set(names)
    for name in names:
        parsed = unit(name)
        assert "Unit" in parsed, name
        if name.endswith(".timer"):
            service = name.removesuffix(".timer") + ".service"
            assert service in names, f"{name} starts {service}, which is not there"
            assert parsed["Timer"].get("OnCalendar"), name
            continue
        service = parsed["Service"]
        if "/bin/mcu" not in service["ExecStart"]:
            continue  # pg_dump runs as postgres
        assert service["ExecStart"].startswith("/opt/mcu/venv/bin/mcu "), name
        assert service["EnvironmentFile"] == ENV_FILE, name
        assert service["User"] == "mcu" and service["Group"] == "mcu", name
        assert service["WorkingDirectory"] == DATA_DIR, name
        assert service["NoNewPrivileges"] == "yes", name
        assert service["ProtectSystem"] == "strict", name
        assert service["ReadWritePaths"].split() == [DATA_DIR], name
        if service.get("Type") != "oneshot":
            assert service["Restart"] == "always", name
            assert parsed["Install"]["WantedBy"] == "multi-user.target", name


def test_serve_and_worker_require_the_migration() -> None:
    for name in ("mcu-serve@.service", "mcu-worker@.service"):
        parsed = unit(name)
        assert "mcu-migrate.service" in parsed["Unit"]["Requires"].split(), name
        assert "mcu-migrate.service" in parsed["Unit"]["After"].split(), name
    assert unit("mcu-serve@.service")["Service"]["ExecStart"].endswith("mcu serve --port %i")
    assert unit("mcu-worker@.service")["Service"]["ExecStart"].endswith("mcu worker")
    migrate = unit("mcu-migrate.service")["Service"]
    assert migrate["Type"] == "oneshot"
    assert migrate["ExecStart"].endswith("mcu migrate")
    # Not RemainAfterExit: each start of a serve or worker runs it again (a no-op when current).
    assert migrate.get("RemainAfterExit", "no") == "no"


# ---------------------------------------------------------------------------------------------
# nginx

def nginx_locations(text: str) -> dict[str, str]:
    """location argument → its block (without nested blocks' braces)."""
    found = {}
    for match in re.finditer(r"^\s*location\s+([^{]+?)\s*\{", text, re.MULTILINE):
        depth, index = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        found[match.group(1)] = text[match.end():index - 1]
    return found


def nginx_upstream(text: str) -> list[str]:
    block = re.search(r"upstream mcu_serve \{(.*?)\n\}", text, re.DOTALL)
    assert block is not None
    assert re.search(r"^\s*least_conn;", block.group(1), re.MULTILINE)
    assert re.search(r"^\s*keepalive \d+;", block.group(1), re.MULTILINE)
    return re.findall(r"^\s*server (\S+)", block.group(1), re.MULTILINE)


@pytest.mark.parametrize("path", [NGINX_HOST, NGINX_COMPOSE], ids=["host", "compose"])
def test_nginx_forwards_only_the_webhook_paths_of_the_program(path: Path) -> None:
    text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
    assert text.count("{") == text.count("}")
    locations = nginx_locations(text)
    defaults = Settings.model_fields
    public = {f"= {defaults['webhook_path'].default}", f"= {defaults['vk_callback_path'].default}"}
    assert set(locations) - {"/.well-known/acme-challenge/"} == public | {
        "= /healthz", "= /metrics", "/"}
    for name in public:
        assert "proxy_pass http://mcu_serve;" in locations[name]
        assert "limit_except POST" in locations[name]
    for name in ("= /healthz", "= /metrics"):
        assert "deny all;" in locations[name] and "allow 127.0.0.1;" in locations[name]
    assert "return 404;" in locations["/"]
    assert "proxy_pass" not in locations.get("/.well-known/acme-challenge/", "")
    assert re.search(r"client_max_body_size \d+m;", text)
    read = re.search(r"proxy_read_timeout (\d+)s;", text)
    assert read is not None and int(read.group(1)) > 60  # longer than a turn's retries
    assert "ssl_certificate /etc/letsencrypt/live/" in text
    assert "proxy_set_header Connection \"\";" in text  # keep-alive to the upstream


def test_nginx_upstream_matches_the_serve_processes() -> None:
    host_ports = [server.split(":")[1] for server in
                  nginx_upstream(NGINX_HOST.read_text(encoding="utf-8"))]
    enable = re.search(r"systemctl enable --now ((?:mcu-\S+ ?)+)", deployment_section())
    assert enable is not None
    assert [u.split("@")[1] for u in enable.group(1).split() if u.startswith("mcu-serve@")] \
        == host_ports
    services = compose()["services"]
    serving = sorted(name for name, s in services.items() if s.get("command", [""])[0] == "serve")
    assert sorted(server.split(":")[0] for server in
                  nginx_upstream(NGINX_COMPOSE.read_text(encoding="utf-8"))) == serving
    for name in serving:
        assert services[name]["command"] == ["serve", "--port", "8080"]


@pytest.mark.skipif(not (shutil.which("nginx") and shutil.which("openssl")),
                    reason="nginx and openssl are not installed")
def test_nginx_accepts_the_host_site(tmp_path: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=mcu.example.ru", "-keyout", str(tmp_path / "privkey.pem"),
                    "-out", str(tmp_path / "fullchain.pem")], check=True, capture_output=True)
    site = NGINX_HOST.read_text(encoding="utf-8")
    site = site.replace("/etc/letsencrypt/live/mcu.example.ru", str(tmp_path))
    site = site.replace("/var/log/nginx", str(tmp_path))
    (tmp_path / "mcu.conf").write_text(site, encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/mcu.conf; }}\n", encoding="utf-8")
    result = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# Docker

def compose() -> dict[str, Any]:
    text = COMPOSE.read_text(encoding="utf-8")
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return parse_simple_yaml(text)
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def test_compose_describes_the_tested_topology() -> None:
    document = compose()
    services = document["services"]
    assert set(services) == {"postgres", "migrate", "serve-1", "serve-2", "worker-1",
                             "worker-2", "nginx"}
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("serve-1", "serve-2", "worker-1", "worker-2", "migrate"):
        service = services[name]
        assert service["build"]["context"] == ".."
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]
                ).resolve() == DOCKERFILE
        assert service["image"] == "mcu-okha:latest"
        assert service["env_file"] == "mcu.env"
    for name in ("serve-1", "serve-2", "worker-1", "worker-2"):
        service = services[name]
        assert service["restart"] == "always"
        assert service["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
        # One attachments volume for all: a photo a serve process saved, a worker sends.
        assert "mcu-data:/var/lib/mcu/data" in service["volumes"]
    for name in ("serve-1", "serve-2"):
        assert services[name]["environment"]["MCU_SERVE_HOST"] == "0.0.0.0"
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for other in depends:
            assert other in services, f"{name} depends on unknown {other}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} missing"
            elif not source.startswith("/"):
                assert source in document["volumes"], f"{name}: volume {source} not declared"
    assert "443:443" in services["nginx"]["ports"]


def test_dockerfile_builds_a_non_root_image_with_the_pinned_versions() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    installs = re.findall(r"pip install [^\n]*", text)
    assert installs and all("-c constraints.txt" in line for line in installs)
    assert re.search(r'^ENTRYPOINT \["mcu"\]$', text, re.MULTILINE)
    for source in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
        for name in source.split():
            assert (ROOT / name).exists(), f"COPY {name}: not in the repository"
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".env", "data", "tests"} <= ignored
    # pyproject.toml names README.md as the package's readme: the build needs it.
    assert "README.md" not in ignored and "*.md" not in ignored


# ---------------------------------------------------------------------------------------------
# A small YAML reader, for when PyYAML is not installed: block mappings, block sequences of
# scalars, JSON-style flow sequences and quoted or plain scalars. compose.yaml keeps to these.

def parse_simple_yaml(text: str) -> dict[str, Any]:
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        assert "\t" not in raw, f"compose.yaml:{number}: a tab"
        content = _strip_comment(raw).rstrip()
        if content.strip():
            lines.append((number, len(content) - len(content.lstrip(" ")), content.strip()))
    value, index = _block(lines, 0, 0)
    assert index == len(lines), f"compose.yaml:{lines[index][0]}: unexpected indentation"
    assert isinstance(value, dict)
    return value


def _strip_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] == " "):
            return line[:index]
    return line


def _block(lines: list[tuple[int, int, str]], index: int, indent: int) -> tuple[Any, int]:
    if lines[index][2].startswith("- ") or lines[index][2] == "-":
        items = []
        while index < len(lines) and lines[index][1] == indent \
                and lines[index][2].startswith("- "):
            number, _, content = lines[index]
            item = content[2:].strip()
            assert not re.match(r"^[\w.-]+:( |$)", item), \
                f"compose.yaml:{number}: mappings in sequences are not supported here"
            items.append(_scalar(item))
            index += 1
        return items, index
    mapping: dict[str, Any] = {}
    while index < len(lines) and lines[index][1] == indent:
        number, _, content = lines[index]
        match = re.match(r"^([\w.-]+):(?: (.*))?$", content)
        assert match, f"compose.yaml:{number}: not `key: value`: {content!r}"
        key, rest = match.group(1), (match.group(2) or "").strip()
        assert key not in mapping, f"compose.yaml:{number}: {key} twice"
        index += 1
        if rest:
            mapping[key] = _scalar(rest)
        elif index < len(lines) and lines[index][1] > indent:
            mapping[key], index = _block(lines, index, lines[index][1])
        else:
            mapping[key] = None
    return mapping, index


def _scalar(text: str) -> Any:
    if text.startswith("["):
        return json.loads(text)
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("'"):
        assert text.endswith("'")
        return text[1:-1].replace("''", "'")
    return text


def test_the_small_yaml_reader_reads_what_pyyaml_would() -> None:
    sample = (
        "name: x  # comment\n"
        "services:\n"
        "  a:\n"
        "    command: [\"serve\", \"--port\", \"8080\"]\n"
        "    restart: \"no\"\n"
        "    ports:\n"
        "      - \"80:80\"\n"
        "      - ./n.conf:/etc/n.conf:ro\n"
        "    depends_on:\n"
        "      b:\n"
        "        condition: service_healthy\n"
        "volumes:\n"
        "  data:\n")
    assert parse_simple_yaml(sample) == {
        "name": "x",
        "services": {"a": {"command": ["serve", "--port", "8080"], "restart": "no",
                           "ports": ["80:80", "./n.conf:/etc/n.conf:ro"],
                           "depends_on": {"b": {"condition": "service_healthy"}}}},
        "volumes": {"data": None}}
    with pytest.raises(AssertionError):
        parse_simple_yaml("services:\n  - name: a\n")
