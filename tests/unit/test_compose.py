"""docker-compose.yml, .env.example and .dockerignore, read as an operator's Docker would: Docker
cannot run here, so every command the file runs is parsed by the real command-line parsers
(ours and Celery's), every setting it passes is checked against the settings models, and its
secrets against what each process needs."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, get_args

import click
import pytest
import yaml
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from celery.worker.control import Panel
from pydantic import SecretStr
from pydantic.fields import FieldInfo

import worker
from connectors.registry import PROVIDERS
from worker.celery_app import ALL_QUEUES
from worker.cli import main as connections_cli
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "standout-connections:local"
# The programs the other images ship, for the commands and health checks run in them.
EXTERNAL_PROGRAMS = {
    "postgres": {"pg_isready"},
    "redis": {"redis-server", "redis-cli"},
    "mher/flower": {"celery", "python"},
    "prom/prometheus": {"wget"},
}
CORE = {"postgres", "redis", "migrate", "ingest", "beat"}

# What each process may hold of the secret settings (those typed SecretStr) and why: see the
# header of docker-compose.yml. PGPASSWORD goes wherever the database does.
WEBHOOK_SECRETS = {
    "CONNECTIONS_SHOPIFY_CLIENT_SECRET",
    "CONNECTIONS_SHOPIFY_PREVIOUS_CLIENT_SECRET",
    "CONNECTIONS_STRIPE_WEBHOOK_SECRET",
    "CONNECTIONS_HUBSPOT_CLIENT_SECRET",
    "CONNECTIONS_HUBSPOT_PREVIOUS_CLIENT_SECRET",
}
PROVIDER_APPS = {
    "CONNECTIONS_SHOPIFY_CLIENT_SECRET",
    "CONNECTIONS_STRIPE_PLATFORM_KEY",
    "CONNECTIONS_FORTNOX_CLIENT_SECRET",
    "CONNECTIONS_HUBSPOT_CLIENT_SECRET",
}
KEYS = {"CONNECTIONS_ENCRYPTION_KEYS"}
SECRETS_BY_SERVICE = {
    "migrate": {"PGPASSWORD"},
    "ingest": {"PGPASSWORD", "CONNECTIONS_SERVICE_TOKEN", *KEYS, *WEBHOOK_SECRETS},
    "worker-jobs": {"PGPASSWORD", *KEYS, *PROVIDER_APPS},
    "worker-checks": {"PGPASSWORD", *KEYS, *PROVIDER_APPS},
    "worker-events": {"PGPASSWORD", *KEYS},
    "beat": {"PGPASSWORD"},
    "fortnox-stream": {"PGPASSWORD", *KEYS, "CONNECTIONS_FORTNOX_CLIENT_SECRET"},
    "postgres": {"POSTGRES_PASSWORD"},
    "redis": set(),
    "flower": {"FLOWER_BASIC_AUTH"},
    "prometheus": set(),
}
SECRETISH = re.compile(r"SECRET|PASSWORD|TOKEN|KEYS?$|_KEY_|AUTH")
# Compose interpolation of a variable with no default value: `${NAME}`, `${NAME:?message}`.
INTERPOLATED = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?\?[^}]*)?\}$")
PASSWORD_IN_URL = re.compile(r"://[^/@:\s]+:[^/@\s]+@")
# What real secrets look like: Stripe keys and webhook secrets, Shopify tokens, Fernet keys.
SECRET_SHAPES = re.compile(
    r"\b(?:sk|rk|pk)_(?:live|test)_\w+|\bwhsec_\w+|\bshp(?:at|ss|ca|pa)_\w+|[A-Za-z0-9_-]{43}="
)


@cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def ours(service: dict[str, Any]) -> bool:
    return service.get("image") == IMAGE


def one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping (YAML merge keys need it)"
    return env


def setting_fields() -> Iterator[tuple[str, FieldInfo]]:
    """Every environment variable the settings models read, with its field."""
    for name, field in Settings.model_fields.items():
        yield f"CONNECTIONS_{name.upper()}", field
    for provider in PROVIDERS.values():
        prefix = str(provider.settings.model_config.get("env_prefix", ""))
        for name, field in provider.settings.model_fields.items():
            yield f"{prefix}{name}".upper(), field


def known_settings() -> set[str]:
    return {name for name, _ in setting_fields()}


def secret_settings() -> set[str]:
    """The settings typed as secrets (`SecretStr`, or `SecretStr | None`)."""
    return {
        name
        for name, field in setting_fields()
        if SecretStr in (field.annotation, *get_args(field.annotation))
    }


# -- commands ------------------------------------------------------------------------------------


def command_words(command: list[str] | str) -> list[str]:
    """A service's command as the words the program gets."""
    return list(command) if isinstance(command, list) else shlex.split(command)


def health_words(test: list[str]) -> list[str]:
    """A health check as the words the program gets: with CMD-SHELL, compose's `$$` is a `$` for
    the shell, which expands $HOSTNAME (the container's own name)."""
    kind, *rest = test
    if kind == "CMD":
        return list(rest)
    assert kind == "CMD-SHELL", f"unexpected health check form {kind}"
    (line,) = rest
    return shlex.split(line.replace("$$", "$").replace("$HOSTNAME", "0123456789ab"))


def parse_click(group: click.Group, name: str, args: list[str], obj: Any = None) -> str:
    """Parse `args` as `group` would, down to the command it names, without running anything;
    click raises UsageError for an unknown command or option. Returns the command's name."""
    ctx = group.make_context(name, list(args), obj=obj)
    rest = args[len(args) - len(ctx.args) - 1 :]
    assert rest, f"{name}: no command given"
    command = group.get_command(ctx, rest[0])
    assert command is not None, f"{name} has no command {rest[0]!r}"
    if isinstance(command, click.Group):
        return parse_click(command, rest[0], rest[1:], obj)
    parsed = command.make_context(rest[0], list(rest[1:]), parent=ctx)
    if command.name == "inspect":
        inspected = parsed.params["command"]
        assert inspected in Panel.meta, f"celery inspect has no command {inspected!r}"
    return str(command.name)


def check_command(words: list[str]) -> None:
    program, *args = words
    if program == "connections":
        parse_click(connections_cli, program, args)
    elif program == "celery":
        assert args[:2] == ["-A", "worker"], "Celery runs our app: celery -A worker ..."
        assert worker.app.main == "connections"
        parse_click(celery_cli, program, args, CLIContext(worker.app, True, None, quiet=True))
    elif program == "python" and args[:1] == ["-c"]:
        compile(args[1], "<healthcheck>", "exec")
    else:
        raise AssertionError(f"{program} is not a program of our image")


def commands(service: dict[str, Any]) -> Iterator[list[str]]:
    if "command" in service:
        yield command_words(service["command"])
    health = service.get("healthcheck")
    if health and not health.get("disable"):
        yield health_words(health["test"])


def test_every_service_that_stays_up_has_a_health_check() -> None:
    for name, service in services().items():
        if one_shot(service):
            continue
        health = service.get("healthcheck")
        assert health, f"{name} has no health check"
        assert not health.get("disable"), name
        assert health["test"][0] in ("CMD", "CMD-SHELL"), name


def test_the_only_one_shot_is_the_migration_and_it_runs_first() -> None:
    assert [n for n, s in services().items() if one_shot(s)] == ["migrate"]
    assert command_words(services()["migrate"]["command"]) == ["connections", "migrate"]
    for name, service in services().items():
        if ours(service) and name != "migrate":
            after = service["depends_on"]["migrate"]["condition"]
            assert after == "service_completed_successfully", name


def test_one_image_built_once_runs_every_process_of_ours() -> None:
    built = {name: s for name, s in services().items() if "build" in s}
    assert list(built) == ["migrate"]
    assert ours(built["migrate"])
    for name, service in services().items():
        runs_ours = any(
            words[0] == "connections" or words[:3] == ["celery", "-A", "worker"]
            for words in commands(service)
        )
        if runs_ours:
            assert ours(service), f"{name} runs our code from another image"
        if ours(service) and name != "migrate":
            assert service.get("pull_policy") == "never", f"{name} would try to pull our image"


def test_every_command_and_health_check_exists() -> None:
    checked = 0
    for name, service in services().items():
        for words in commands(service):
            if ours(service):
                check_command(words)
                checked += 1
            elif not words[0].startswith("-"):  # options alone go to the image's entrypoint
                image = service["image"].split(":")[0]
                assert words[0] in EXTERNAL_PROGRAMS[image], f"{name}: {words[0]}"
    assert checked >= 13


@pytest.mark.parametrize(
    "words",
    [
        ["connections", "ingest", "--threads", "2"],
        ["connections", "fortnox"],
        ["celery", "-A", "worker", "worker", "--queue-all"],
        ["celery", "-A", "worker", "inspect", "pong"],
        ["celery", "-A", "other", "worker"],
        ["gunicorn", "worker.api.app"],
    ],
)
def test_a_command_that_does_not_exist_is_caught(words: list[str]) -> None:
    with pytest.raises((click.UsageError, AssertionError)):
        check_command(words)


def test_the_fortnox_listener_starts_only_in_its_profile() -> None:
    listeners = [
        name
        for name, service in services().items()
        if ["connections", "fortnox-stream"] in list(commands(service))
    ]
    assert listeners == ["fortnox-stream"]
    assert services()["fortnox-stream"]["profiles"] == ["fortnox"]
    for name in CORE | {n for n in services() if n.startswith("worker-")}:
        assert "profiles" not in services()[name], f"{name} must start by default"


def test_the_worker_pools_consume_every_queue() -> None:
    consumed: list[str] = []
    for name, service in services().items():
        words = command_words(service["command"]) if "command" in service else []
        if words[:4] == ["celery", "-A", "worker", "worker"]:
            assert "-Q" in words, f"{name}: a pool names its queues"
            consumed += words[words.index("-Q") + 1].split(",")
    assert sorted(consumed) == sorted(ALL_QUEUES), "each queue is consumed by exactly one pool"


# -- settings and secrets ------------------------------------------------------------------------


def test_every_setting_passed_is_one_the_processes_read() -> None:
    known = known_settings()
    for name, service in services().items():
        if ours(service):
            for key in environment(service):
                if key.startswith("CONNECTIONS_"):
                    assert key in known, f"{name}: {key} is no setting"


def test_no_service_reads_the_whole_env_file() -> None:
    for name, service in services().items():
        assert "env_file" not in service, f"{name} would get every secret in it"


def test_each_process_gets_only_the_secrets_it_needs() -> None:
    secrets = secret_settings() | {"PGPASSWORD", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"}
    assert KEYS | PROVIDER_APPS | WEBHOOK_SECRETS <= secrets
    for name, service in services().items():
        given = {k for k in environment(service) if k in secrets}
        assert given == SECRETS_BY_SERVICE[name], name


def test_no_secret_is_written_into_the_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not SECRET_SHAPES.search(text)
    assert not PASSWORD_IN_URL.search(text)
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRETISH.search(key):
                assert value is None or INTERPOLATED.match(str(value)), f"{name}: {key}"


def test_the_database_password_is_passed_apart_from_the_url() -> None:
    for name, service in services().items():
        env = environment(service)
        if "CONNECTIONS_DATABASE_URL" in env:
            assert not PASSWORD_IN_URL.search(env["CONNECTIONS_DATABASE_URL"]), name
            assert env["PGPASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}"


def test_redis_is_persistent_bounded_and_never_evicts() -> None:
    words = command_words(services()["redis"]["command"])
    option = dict(zip(words[1::2], words[2::2], strict=False))
    assert words[0] == "redis-server"
    assert option["--appendonly"] == "yes"
    assert option["--maxmemory-policy"] == "noeviction"
    assert re.fullmatch(r"\d+(mb|gb)", option["--maxmemory"])


def test_the_env_example_names_only_settings_and_holds_no_secret() -> None:
    known = known_settings() | {"POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH", "COMPOSE_PROFILES"}
    text = (ROOT / ".env.example").read_text()
    assert not SECRET_SHAPES.search(text)
    names = re.findall(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE)
    assert names
    for name, value in names:
        assert name in known, f"{name} is no setting"
        if SECRETISH.search(name):
            assert value in ("", "change-me"), f"{name} has a value"
    # What compose passes through from .env is named there, for the operator to fill in.
    passed = {k for s in services().values() for k, v in environment(s).items() if v is None}
    for name in passed:
        assert re.search(rf"^#?{name}=", text, flags=re.MULTILINE), f".env.example lacks {name}"


# -- the image's build context -------------------------------------------------------------------


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression: `**/` any directories, `*` and `?`
    within one path element."""
    out = ""
    rest = pattern.strip("/")
    while rest:
        if rest.startswith("**/"):
            out, rest = out + "(?:.*/)?", rest[3:]
        elif rest.startswith("**"):
            out, rest = out + ".*", rest[2:]
        elif rest[0] == "*":
            out, rest = out + "[^/]*", rest[1:]
        elif rest[0] == "?":
            out, rest = out + "[^/]", rest[1:]
        elif rest[0] == "[":
            close = rest.index("]")
            out, rest = out + rest[: close + 1], rest[close + 1 :]
        else:
            out, rest = out + re.escape(rest[0]), rest[1:]
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last pattern that matches
    the path or one of its parent directories decides."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = pattern_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_secrets_and_local_state_stay_out_of_the_image() -> None:
    patterns = dockerignore()
    for path in (".env", ".env.production", ".venv", ".git", "var", "tests", "bench"):
        assert ignored(path, patterns), path
    assert ignored("worker/__pycache__", patterns)
    assert not ignored(".env.example", patterns)


def test_what_the_dockerfile_copies_is_in_the_build_context() -> None:
    patterns = dockerignore()
    copied = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied += [w for w in words[1:-1] if not w.startswith("--")]
    assert copied
    for source in copied:
        assert not ignored(source, patterns), f"the Dockerfile copies {source}, ignored"


# -- the runbook and the README's production section ---------------------------------------------


def production_texts() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Running in production")
    end = readme.index("\n## ", start + 1)
    return {
        "docs/operations.md": (ROOT / "docs" / "operations.md").read_text(),
        "README.md": readme[start:end],
    }


def command_lines(text: str) -> Iterator[str]:
    """The `connections ...` and `celery -A worker ...` commands a text gives, in shell code blocks
    and inline code, as an operator would type them inside a container."""
    candidates: list[str] = []
    prose: list[str] = []
    fence: str | None = None  # the language of the code block we are in
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fence = None if fence is not None else line.strip().removeprefix("```")
        elif fence is None:
            prose.append(line)
        elif fence in ("bash", "sh", ""):
            candidates.append(line)
    candidates += re.findall(r"`([^`]+)`", "\n".join(prose))
    for candidate in candidates:
        line = " ".join(candidate.split("#", 1)[0].split())
        line = re.sub(r"^docker compose (?:exec|run --rm)(?: -T)? [\w-]+ ", "", line)
        if line.startswith(("connections ", "celery -A worker")) and "..." not in line:
            yield line


def test_every_command_the_runbook_gives_exists() -> None:
    checked = 0
    for where, text in production_texts().items():
        for line in command_lines(text):
            # Placeholders stand for a value: `<account id>`, `celery@<host>`, `--workers N`.
            words = shlex.split(re.sub(r"<[^>]*>", "x", line))
            words = ["2" if word == "N" else word for word in words]
            if words[-1] == "--help":  # every command has it; check the command it names
                words = words[:-1]
            if words == ["connections"]:
                continue
            try:
                check_command(words)
            except (click.UsageError, AssertionError) as exc:
                raise AssertionError(f"{where}: {line}: {exc}") from exc
            checked += 1
    assert checked >= 20


def test_every_setting_the_runbook_names_exists() -> None:
    known = known_settings()
    for where, text in production_texts().items():
        for name in re.findall(r"\bCONNECTIONS_[A-Z0-9_]*[A-Z0-9]\b", text):
            assert name in known, f"{where} names {name}, which no process reads"


def test_every_alert_has_its_section_in_the_runbook() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"] if "alert" in r]
    assert alerts
    runbook = (ROOT / "docs" / "operations.md").read_text()
    sections = re.findall(r"^### (\w+)$", runbook, flags=re.MULTILINE)
    for rule in alerts:
        name = rule["alert"]
        assert name in sections, f"docs/operations.md has no section for the alert {name}"
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"operations.md#{name.lower()}"), f"{name}: runbook_url {url}"
