"""The deployment files agree with the code: compose.yaml, the Dockerfile and the Helm chart.

No container engine or `helm` runs here, so the chart's templates are rendered by a small
renderer of exactly the template subset they use (values, `.Release.Name`,
`.Chart.AppVersion`, `if`/`else`/`end`, `quote`, `default`, `nindent`, `toYaml`); anything
else in a template fails the test, so the subset cannot grow unnoticed. The rendered
manifests are then parsed as YAML and checked against the gateway's own defaults: its port,
its grace period, the /healthz and /readyz paths, the spool directory of the image.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml
from factories import ROOT

from spendtrail.cli import ledger_cmd
from spendtrail.cli.gateway_cmd import gateway

CHART = ROOT / "deploy" / "helm" / "spendtrail"
SPOOL = "/var/lib/spendtrail/spool"


def option_default(name: str):
    return inspect.signature(gateway).parameters[name].default


PORT, GRACE = option_default("port"), option_default("grace")


# -- a renderer for the chart's template subset -------------------------------------------

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def render(text: str, values: dict, release: str = "st") -> str:
    context = {"Values": values, "Release": {"Name": release}, "Chart": chart_meta()}
    pieces: list[tuple[str, str]] = []  # ("text", s) or ("action", s)
    position = 0
    for match in _ACTION.finditer(text):
        before = text[position : match.start()]
        if match[1]:
            before = before.rstrip(" \t\n")
        pieces.append(("text", before))
        pieces.append(("action", match[2]))
        position = match.end()
        if match[3]:
            rest = text[position:]
            position += len(rest) - len(rest.lstrip(" \t\n"))
    pieces.append(("text", text[position:]))
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch active, the enclosing one active)
    active = True
    for kind, piece in pieces:
        if kind == "text":
            if active:
                out.append(piece)
            continue
        words = piece.split()
        if words[0] == "if":
            stack.append((active, active))
            cond = truthy(evaluate(piece[2:].strip(), context)) if active else False
            active = active and cond
            stack[-1] = (active, stack[-1][1])
        elif words == ["else"]:
            taken, outer = stack[-1]
            active = outer and not taken
            stack[-1] = (True, outer)
        elif words == ["end"]:
            active = stack.pop()[1]
        elif active:
            value = evaluate(piece, context)
            out.append(value if isinstance(value, str) else json.dumps(value))
    assert not stack, "an `if` without its `end`"
    return "".join(out)


def evaluate(expression: str, context: dict):
    stages = [stage.strip() for stage in expression.split("|")]
    value = term(stages[0], context)
    for stage in stages[1:]:
        name, *args = stage.split()
        if name == "quote":
            value = json.dumps("" if value is None else str(value))
        elif name == "default":
            value = value if truthy(value) else term(args[0], context)
        elif name == "nindent":
            pad = " " * int(args[0])
            value = "\n" + "\n".join(
                pad + line if line else line for line in str(value).rstrip("\n").split("\n")
            )
        else:
            raise AssertionError(f"template function not in the renderer's subset: {stage}")
    return value


def term(text: str, context: dict):
    words = text.split()
    if words[0] == "not" and len(words) == 2:
        return not truthy(term(words[1], context))
    if words[0] == "toYaml" and len(words) == 2:
        return yaml.safe_dump(term(words[1], context), sort_keys=False).rstrip("\n")
    if len(words) == 1 and words[0].startswith("."):
        value = context
        for part in words[0][1:].split("."):
            assert isinstance(value, dict) and part in value, f"no value {words[0]}"
            value = value[part]
        return value
    raise AssertionError(f"template expression not in the renderer's subset: {text}")


def truthy(value) -> bool:
    return bool(value) and value != 0


def chart_meta() -> dict:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return {"Name": meta["name"], "AppVersion": meta["appVersion"], "Version": meta["version"]}


def manifests(overrides: dict | None = None) -> dict[tuple[str, str], dict]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    merge(values, overrides or {})
    found = {}
    for template in sorted((CHART / "templates").glob("*.yaml")):
        for document in yaml.safe_load_all(render(template.read_text(), values)):
            if document:
                found[document["kind"], document["metadata"]["name"]] = document
    return found


def merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


# -- the renderer itself ------------------------------------------------------------------


def test_the_renderer_follows_helm_whitespace_and_conditionals():
    template = (
        "a:\n  {{- if .Values.x }}\n  b: {{ .Values.y | quote }}\n"
        "  {{- else }}\n  c: 1\n  {{- end }}\n"
    )
    assert render(template, {"x": True, "y": 3}) == 'a:\n  b: "3"\n'
    assert render(template, {"x": "", "y": 3}) == "a:\n  c: 1\n"
    assert render("r:\n  {{- toYaml .Values.r | nindent 2 }}\n", {"r": {"cpu": "1"}}) == (
        "r:\n  cpu: '1'\n"
    )
    with pytest.raises(AssertionError, match="subset"):
        render('{{ include "x" . }}', {})


HELM = os.environ.get("SPENDTRAIL_HELM") or shutil.which("helm")
VALUE_SETS = [
    {},
    {
        "journal": {"url": "nats://nats:4222"},
        "config": {"policy": "default: reject\n"},
        "gateway": {
            "upstream": "http://upstream:9000/v1",
            "provider": "acme",
            "spool": {"storageClassName": "fast"},
        },
    },
]


@pytest.mark.skipif(
    HELM is None,
    reason="no helm here (set SPENDTRAIL_HELM to its path) to "
    "compare the renderer with `helm template` and run `helm lint`",
)
@pytest.mark.parametrize("overrides", VALUE_SETS)
def test_the_renderer_agrees_with_helm_template(tmp_path, overrides):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(overrides))
    env = {**os.environ, "HOME": str(tmp_path)}
    lint = subprocess.run(
        [HELM, "lint", "--strict", str(CHART), "-f", str(values)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    done = subprocess.run(
        [HELM, "template", "st", str(CHART), "-f", str(values)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout) if d}
    assert rendered == manifests(overrides)


# -- the chart ------------------------------------------------------------------------------


def gateway_pod(found: dict) -> dict:
    return found["StatefulSet", "st-spendtrail-gateway"]["spec"]["template"]["spec"]


def test_the_gateway_probes_port_and_grace_match_the_gateway():
    found = manifests()
    pod = gateway_pod(found)
    container = pod["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": PORT}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert f"--grace={GRACE:g}" in container["args"]
    assert f"--port={PORT}" in container["args"]
    # One worker per core the pod requests: without --workers a pod without a CPU limit
    # would start one per core of the node.
    workers = int(next(a for a in container["args"] if a.startswith("--workers="))[10:])
    assert workers == int(container["resources"]["requests"]["cpu"])
    # The pod is killed after terminationGracePeriodSeconds: the preStop wait, the drain
    # (--grace), the in-process ingester's last round (--grace again) and a margin fit.
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + 2 * GRACE + 5
    service = found["Service", "st-spendtrail-gateway"]["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    selector = found["StatefulSet", "st-spendtrail-gateway"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["selector"].items()


def test_each_gateway_pod_has_its_own_spool_volume_and_ingests_it():
    found = manifests()
    stateful = found["StatefulSet", "st-spendtrail-gateway"]["spec"]
    claim = stateful["volumeClaimTemplates"][0]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {
        m["name"]: m["mountPath"] for m in gateway_pod(found)["containers"][0]["volumeMounts"]
    }
    assert mounts[claim["metadata"]["name"]] == SPOOL
    assert "--ingest" in gateway_pod(found)["containers"][0]["args"]
    assert not any(kind == "Deployment" for kind, _ in found)  # no ingester without NATS


def test_with_the_nats_journal_an_ingester_deployment_consumes_it():
    found = manifests({"journal": {"url": "nats://nats:4222"}})
    args = gateway_pod(found)["containers"][0]["args"]
    assert "--no-ingest" in args and "--ingest" not in args
    ingester = found["Deployment", "st-spendtrail-ingester"]["spec"]["template"]["spec"]
    container = ingester["containers"][0]
    assert container["args"][:2] == ["ingest", "--follow"]
    assert {"name": "SPENDTRAIL_JOURNAL_URL", "value": "nats://nats:4222"} in container["env"]


def test_migrations_run_once_in_a_hook_job_before_the_release_starts():
    found = manifests(
        {"config": {"registry": "business_units: []\n", "policy": "default: reject\n"}}
    )
    job = found["Job", "st-spendtrail-migrate"]
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert script.startswith("spendtrail init &&")
    config = found["ConfigMap", "st-spendtrail-config"]
    # The ConfigMap the Job mounts exists before it: a hook of lower weight.
    assert int(config["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        hooks["helm.sh/hook-weight"]
    )
    assert config["data"] == {
        "registry.yaml": "business_units: []\n",
        "policy.yaml": "default: reject\n",
    }
    assert (
        "--policy-file=/etc/spendtrail/policy.yaml" in gateway_pod(found)["containers"][0]["args"]
    )


def pod_spec(manifest: dict) -> dict:
    """The pod a workload runs ({} for what runs none): a CronJob's is one level deeper."""
    spec = manifest.get("spec", {})
    spec = spec.get("jobTemplate", {}).get("spec", spec)
    return spec.get("template", {}).get("spec") or {}


def test_partitions_are_created_ahead_by_a_daily_cronjob():
    found = manifests()
    cron = found["CronJob", "st-spendtrail-partitions"]["spec"]
    minute, hour, *every_day = cron["schedule"].split()
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24 and every_day == ["*", "*", "*"]
    assert cron["concurrencyPolicy"] == "Forbid"  # one creator at a time, never a pile-up
    pod = pod_spec(found["CronJob", "st-spendtrail-partitions"])
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == gateway_pod(found)["containers"][0]["image"]
    command, ahead = container["args"][:2], container["args"][2:]
    assert command == ["ledger", "partitions"]
    assert ahead == ["--ahead=3"]
    assert "ahead" in inspect.signature(ledger_cmd.partitions).parameters
    assert container["envFrom"] == [{"secretRef": {"name": "spendtrail"}}]  # the ledger URL
    later = manifests({"partitions": {"ahead": 6, "schedule": "0 1 * * *"}})
    cron = later["CronJob", "st-spendtrail-partitions"]
    assert pod_spec(cron)["containers"][0]["args"][2:] == ["--ahead=6"]
    assert cron["spec"]["schedule"] == "0 1 * * *"


def test_secrets_are_referenced_never_written():
    found = manifests()
    assert not any(kind == "Secret" for kind, _ in found)
    assert ("CronJob", "st-spendtrail-partitions") in found  # its pod is checked too
    for kind, name in found:
        pod = pod_spec(found[kind, name])
        for container in pod.get("containers", []):
            assert container["envFrom"] == [{"secretRef": {"name": "spendtrail"}}]
            names = {entry["name"] for entry in container.get("env", [])}
            assert not names & {
                "SPENDTRAIL_DATABASE_URL",
                "COMETAPI_KEY",
                "OPENAI_API_KEY",
                "SPENDTRAIL_UPSTREAM_KEY",
            }
            assert pod["securityContext"]["runAsNonRoot"] is True


# -- compose.yaml and the Dockerfile ------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_three_gateways_each_with_its_own_spool_volume():
    services = compose()["services"]
    gateways = {name: s for name, s in services.items() if name.startswith("gateway-")}
    assert len(gateways) == 3
    spools = set()
    for service in gateways.values():
        assert service["command"][0] == "gateway"
        assert service["command"][service["command"].index("--port") + 1] == str(PORT)
        (volume,) = service["volumes"]
        name, path = volume.split(":")
        assert path == SPOOL
        spools.add(name)
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        grace = float(service["environment"]["SPENDTRAIL_GATEWAY_GRACE"])
        assert int(service["stop_grace_period"].removesuffix("s")) >= 2 * grace + 5
        assert service["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    assert len(spools) == 3 and spools <= set(compose()["volumes"])
    assert {"postgres", "redis", "nats", "ingester", "init", "partitions"} <= set(services)
    assert services["ingester"]["command"] == ["ingest", "--follow"]
    assert "--jetstream" in services["nats"]["command"]


def test_compose_creates_partitions_ahead_every_day(tmp_path):
    """The `partitions` service's loop, run by sh with a stand-in `spendtrail` on the PATH:
    it runs `spendtrail ledger partitions --ahead 3`, then sleeps, and SIGTERM ends it at
    once with status 0 (compose stops it without waiting for the kill)."""
    service = compose()["services"]["partitions"]
    assert service["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    assert service["entrypoint"] == ["sh", "-c"]
    (script,) = service["command"]
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "spendtrail"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    loop = subprocess.Popen(
        ["sh", "-c", script.replace("$$", "$")],  # compose's escape for a literal $
        env={**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"},
    )
    try:
        deadline = time.monotonic() + 10
        while not calls.exists():
            assert time.monotonic() < deadline, "the loop never ran the command"
            time.sleep(0.05)
        time.sleep(0.2)
        assert calls.read_text() == "ledger partitions --ahead 3\n"  # once, then it sleeps
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(5) == 0
    finally:
        loop.kill()


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    return None


@pytest.mark.skipif(
    compose_command() is None,
    reason="no docker compose here (apt-get install docker-compose) to validate compose.yaml with",
)
def test_docker_compose_accepts_the_file(tmp_path):
    for name in ("compose.yaml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "deploy" / "compose").mkdir(parents=True)
    for name in ("spendtrail", "postgres"):
        example = ROOT / "deploy" / "compose" / f"{name}.env.example"
        shutil.copy(example, tmp_path / "deploy" / "compose" / f"{name}.env")
    done = subprocess.run(
        [*compose_command(), "--profile", "nats", "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert services["gateway-1"]["environment"]["SPENDTRAIL_DATABASE_URL"].startswith(
        "postgresql://"
    )  # from the env file
    assert set(services) >= {"gateway-1", "gateway-2", "gateway-3", "ingester", "init"}


def test_compose_takes_secrets_from_env_files_only():
    services = compose()["services"]
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            assert not re.search(r"KEY|PASSWORD|DATABASE_URL", key), (name, key)
            assert "CHANGE-ME" not in str(value)
    assert services["gateway-1"]["env_file"] == ["deploy/compose/spendtrail.env"]
    assert services["postgres"]["env_file"] == ["deploy/compose/postgres.env"]
    ignored = (ROOT / "deploy" / "compose" / ".gitignore").read_text().split()
    assert "*.env" in ignored


def test_the_image_runs_spendtrail_as_a_non_root_user_with_the_spool_on_a_volume():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[1].endswith("AS runtime")
    assert 'ENTRYPOINT ["spendtrail"]' in lines
    assert f'VOLUME ["{SPOOL}"]' in lines
    user = next(line for line in lines if line.startswith("USER "))
    assert not user.split()[1].startswith(("0", "root"))
    assert any(line.startswith("    SPENDTRAIL_SPOOL_DIR=" + SPOOL) for line in lines)
    assert f"EXPOSE {PORT}" in lines
