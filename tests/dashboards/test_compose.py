"""docker-compose.yml (and docker-compose.gpu.yml / docker-compose.azure.yml, which add
the optional exporters): the real `docker-compose config` (Debian package
docker-compose, no Docker engine needed) accepts them, and everything they mount exists
in the repo.

Also checks it against the other deploy files: every scrape target in
deploy/prometheus.yml is a compose service listening on that port, and every secret
file a mounted config refers to (/etc/aispend/secrets/NAME) is mounted as a compose
secret into the services that read that config.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, require_binary

PROFILES = ("demo",)
EXTRA_FILES = {
    "docker-compose.gpu.yml": {"exporter-gpu"},
    "docker-compose.azure.yml": {"exporter-tokens", "exporter-billing"},
}
"""Compose files that add optional exporters (and their scrape targets), by the exporters."""
TARGETS_PREFIX = "/etc/prometheus/targets-"
CORE = {"prometheus", "alertmanager", "grafana", "exporter-budgets", "gateway", "actuator"}
ALL = CORE | {
    "exporter-gpu", "exporter-tokens", "exporter-billing",
    "demo-upstream", "chat-sink", "demo-traffic",
}  # fmt: skip
SECRET_RE = re.compile(r"/etc/aispend/secrets/([A-Za-z0-9_.-]+)")


def compose_config(
    *profiles: str, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> dict[str, Any]:
    binary = require_binary("docker-compose")
    argv = [binary, "-f", str(REPO / "docker-compose.yml")]
    for name in extra:
        argv += ["-f", str(REPO / name)]
    for profile in profiles:
        argv += ["--profile", profile]
    done = subprocess.run(
        [*argv, "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = yaml.safe_load(done.stdout)
    return data


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return compose_config(*PROFILES, extra=tuple(EXTRA_FILES))


def _binds(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else "rw"
        out.append((source, target, mode))
    return out


def test_config_accepts_the_file_with_every_profile(config: dict[str, Any]) -> None:
    assert set(config["services"]) == ALL
    assert set(config["volumes"]) == {
        "prometheus-data", "alertmanager-data", "grafana-data", "gateway-state",
        "actuator-state", "tokens-state",
    }  # fmt: skip
    # Each service that keeps state keeps it in a volume at the image's WORKDIR.
    for service, volume in (
        ("gateway", "gateway-state"),
        ("actuator", "actuator-state"),
        ("exporter-tokens", "tokens-state"),
    ):
        assert (volume, "/var/lib/aispend", "rw") in _binds(config["services"][service]), service


def test_profiles_keep_optional_services_out_of_the_default_stack(
    config: dict[str, Any],
) -> None:
    """docker-compose 1.29's `config` prints every service whatever the profiles, so the
    profiles are read from the file itself (YAML merge keys resolved). The optional
    exporters are not in docker-compose.yml at all: each extra file adds its exporters
    and changes nothing else but Prometheus' mounts."""
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    profiles = {name: tuple(s.get("profiles", ())) for name, s in raw.items()}
    assert {n for n, p in profiles.items() if not p} == CORE
    assert {n for n, p in profiles.items() if p == ("demo",)} == {
        "demo-upstream", "chat-sink", "demo-traffic",
    }  # fmt: skip
    assert set(profiles) == ALL - set().union(*EXTRA_FILES.values())
    for name, exporters in EXTRA_FILES.items():
        services = yaml.safe_load((REPO / name).read_text())["services"]
        assert set(services) == exporters | {"prometheus"}, name
        assert set(services["prometheus"]) == {"volumes"}, name
    assert config["services"]["demo-traffic"]["command"] == [
        "demo", "traffic", "--gateway", "http://gateway:9120",
    ]  # fmt: skip


def test_a_broken_compose_file_is_refused(tmp_path: Path) -> None:
    """The check can fail: a service with an unknown key is an error."""
    binary = require_binary("docker-compose")
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  x:\n    image: busybox\n    volumez: []\n")
    done = subprocess.run([binary, "-f", str(bad), "config"], capture_output=True, text=True)
    assert done.returncode != 0
    assert "volumez" in done.stderr


def test_every_bind_mount_is_a_repo_path_mounted_read_only(config: dict[str, Any]) -> None:
    named = set(config["volumes"])
    seen = set()
    for name, service in config["services"].items():
        for source, target, mode in _binds(service):
            if source in named:
                continue
            path = Path(source)
            assert path.is_relative_to(REPO), f"{name}: {source} is outside the repo"
            assert path.exists(), f"{name}: mounts {path.relative_to(REPO)}, which does not exist"
            assert mode == "ro", f"{name}: {source} -> {target} is not read-only"
            seen.add(path.relative_to(REPO).as_posix())
    assert seen == {
        "aispend.example.yaml", "deploy/prometheus.yml", "alert-rules",
        "deploy/alertmanager.yml", "deploy/grafana/provisioning", "dashboards",
        "deploy/targets/exporter-gpu.yml", "deploy/targets/exporter-tokens.yml",
        "deploy/targets/exporter-billing.yml",
    }  # fmt: skip


def test_aispend_services_read_the_config_named_by_aispend_config_file(
    config: dict[str, Any], tmp_path: Path
) -> None:
    """Every aispend service mounts one config: aispend.example.yaml unless
    $AISPEND_CONFIG_FILE names the user's (README: `AISPEND_CONFIG_FILE=./aispend.yaml`)."""
    aispend = {n for n, s in config["services"].items() if "build" in s}

    def mounts(cfg: dict[str, Any]) -> dict[str, str]:
        return {
            name: source
            for name in aispend
            for source, target, _ in _binds(cfg["services"][name])
            if target == "/etc/aispend/aispend.yaml"
        }

    assert mounts(config) == {name: str(REPO / "aispend.example.yaml") for name in aispend}
    mine = tmp_path / "aispend.yaml"
    other = compose_config(
        *PROFILES, extra=tuple(EXTRA_FILES), env={"AISPEND_CONFIG_FILE": str(mine)}
    )
    assert mounts(other) == {name: str(mine) for name in aispend}
    assert len(aispend) == 9


def test_prometheus_mounts_match_its_rule_files(config: dict[str, Any]) -> None:
    prom = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    for entry in prom["rule_files"]:
        assert entry.startswith("/etc/prometheus/rules/")
        local = REPO / "alert-rules" / entry.removeprefix("/etc/prometheus/rules/")
        assert local.exists(), f"deploy/prometheus.yml loads {entry}: {local} is missing"


def _targets(job: dict[str, Any], prometheus: dict[str, Any]) -> list[str]:
    """A job's targets: static, or from the target files mounted into Prometheus."""
    if "static_configs" in job:
        return [t for static in job["static_configs"] for t in static["targets"]]
    mounted = {target: Path(source) for source, target, _ in _binds(prometheus)}
    out = []
    for sd in job["file_sd_configs"]:
        for name in sd["files"]:
            assert name.startswith(TARGETS_PREFIX), f"job {job['job_name']}: {name}"
            if name in mounted:
                for group in yaml.safe_load(mounted[name].read_text()):
                    out += group["targets"]
    return out


def test_every_scrape_target_is_a_service_listening_on_that_port(config: dict[str, Any]) -> None:
    prom = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    services = config["services"]
    scraped = set()
    for job in prom["scrape_configs"]:
        for target in _targets(job, services["prometheus"]):
            host, port = target.split(":")
            assert host in services, f"job {job['job_name']}: no service {host}"
            command = services[host].get("command", [])
            if "--listen" in command:
                listen = command[command.index("--listen") + 1]
                assert listen == f"0.0.0.0:{port}", f"{host} listens on {listen}"
            published = {p["target"] for p in services[host].get("ports", [])}
            assert int(port) in published, f"{host}: port {port} not published"
            scraped.add(host)
    assert set().union(*EXTRA_FILES.values()) <= scraped


def test_the_core_stack_scrapes_no_optional_exporter() -> None:
    """Without an extra file Prometheus gets no target for an optional exporter (so no
    false AISpendExporterDown); each extra file mounts exactly its exporters' targets."""
    prom = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    optional = {"aispend-gpu", "aispend-tokens", "aispend-billing"}
    assert {j["job_name"] for j in prom["scrape_configs"] if "file_sd_configs" in j} == optional
    core = compose_config()
    for job in prom["scrape_configs"]:
        targets = _targets(job, core["services"]["prometheus"])
        assert (targets == []) == (job["job_name"] in optional), job["job_name"]
    for name, exporters in EXTRA_FILES.items():
        with_extra = compose_config(extra=(name,))
        assert exporters <= set(with_extra["services"])
        hosts = {
            t.split(":")[0]
            for job in prom["scrape_configs"]
            if job["job_name"] in optional
            for t in _targets(job, with_extra["services"]["prometheus"])
        }
        assert hosts == exporters, name


def _mounted_configs(service: dict[str, Any]) -> list[Path]:
    out = []
    for source, _, _ in _binds(service):
        path = Path(source)
        if path.is_file() and path.suffix in (".yml", ".yaml"):
            out.append(path)
    return out


def _secret_refs(node: Any) -> set[str]:
    """Secret file names referenced by the values of a parsed config (not its comments)."""
    if isinstance(node, dict):
        return set().union(*(_secret_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_secret_refs(v) for v in node))
    return set(SECRET_RE.findall(node)) if isinstance(node, str) else set()


def _secret_target(spec: str | dict[str, str]) -> str:
    if isinstance(spec, str):
        return f"/run/secrets/{spec}"
    return spec.get("target") or f"/run/secrets/{spec['source']}"


def test_every_secret_a_config_refers_to_is_mounted(config: dict[str, Any]) -> None:
    """Each service gets, as compose secrets, the secret files named in the configs it
    mounts and reads (the gateway reads only its own section of aispend.yaml; the demo
    services and exporters read no secrets)."""
    readers = {"alertmanager": None, "actuator": None, "gateway": {"gateway_admin_token"}}
    pairs = set()
    for name, only in readers.items():
        service = config["services"][name]
        mounted = {_secret_target(s) for s in service.get("secrets", [])}
        needed: set[str] = set()
        for path in _mounted_configs(service):
            needed |= _secret_refs(yaml.safe_load(path.read_text(encoding="utf-8")))
        for secret in needed & only if only is not None else needed:
            assert f"/etc/aispend/secrets/{secret}" in mounted, f"{name} needs secret {secret}"
            assert secret in config["secrets"]
            pairs.add((name, secret))
    assert pairs == {
        ("alertmanager", "actuator_token"), ("alertmanager", "pagerduty_routing_key"),
        ("alertmanager", "chat_token"), ("actuator", "actuator_token"),
        ("actuator", "gateway_admin_token"), ("gateway", "gateway_admin_token"),
    }  # fmt: skip


def test_secrets_come_from_files_under_the_run_dir(config: dict[str, Any]) -> None:
    for name, spec in config["secrets"].items():
        assert spec["file"] == str(REPO / ".run" / "compose-secrets" / name)
    other = compose_config(env={"AISPEND_SECRETS_DIR": "/srv/aispend-secrets"})
    assert other["secrets"]["actuator_token"]["file"] == "/srv/aispend-secrets/actuator_token"


def test_grafana_is_provisioned_password_protected_and_not_anonymous(
    config: dict[str, Any],
) -> None:
    grafana = config["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert [_secret_target(s) for s in grafana["secrets"]] == [
        "/run/secrets/grafana_admin_password"
    ]
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/aispend.yml").read_text()
    )["providers"][0]
    assert provider["allowUiUpdates"] is False
    targets = {t: s for s, t, _ in _binds(grafana)}
    assert targets[provider["options"]["path"]] == str(REPO / "dashboards")
    datasource = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["type"] == "prometheus"
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].endswith("/overview.json")


def test_long_running_services_have_healthchecks(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        if name == "demo-traffic":
            continue  # a client: nothing to probe
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        assert any("127.0.0.1:" in part for part in test), name


def test_aispend_services_use_the_one_dockerfile(config: dict[str, Any]) -> None:
    images = {name: s["image"] for name, s in config["services"].items() if "build" in s}
    assert set(images.values()) == {"aispend:local"}
    assert set(images) == ALL - {"prometheus", "alertmanager", "grafana"}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") == 1 and "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile and 'ENTRYPOINT ["aispend"]' in dockerfile


def test_secrets_script_creates_missing_files_and_keeps_existing(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    env = {**os.environ, "AISPEND_SECRETS_DIR": str(secrets_dir)}
    script = REPO / "deploy" / "compose-secrets.sh"
    first = subprocess.run([script], env=env, capture_output=True, text=True, check=True)
    names = sorted(p.name for p in secrets_dir.iterdir())
    assert names == sorted(compose_config()["secrets"])
    token = (secrets_dir / "actuator_token").read_text()
    assert len(token) >= 32 and token.isalnum()
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert first.stdout.count("created") == len(names)
    second = subprocess.run([script], env=env, capture_output=True, text=True, check=True)
    assert second.stdout.count("kept") == len(names)
    assert (secrets_dir / "actuator_token").read_text() == token
