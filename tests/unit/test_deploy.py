"""The deployment (deploy/ecs.yaml, deploy/appspec.yaml, the deploy workflow) and the service agree.

The template is read with cfn-lint's own loader, which understands !Ref, !Sub and the other tags
(they come back as {"Ref": ...} dictionaries).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cfnlint.decode import decode_str

from fraudscore.edge.keys import load_keys
from fraudscore.edge.routes import match
from fraudscore.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = {"FRAUD_API_KEYS", "API_KEY", "FRAUD_API_KEYS_FILE"}


def _load_template(name: str) -> dict:
    template, matches = decode_str((ROOT / "deploy" / name).read_text())
    assert template is not None and not matches, matches
    return template


@pytest.fixture(scope="module")
def template() -> dict:
    return _load_template("ecs.yaml")


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


@pytest.fixture(scope="module")
def container(resources) -> dict:
    (only,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return only


@pytest.fixture(scope="module")
def configuration() -> dict:
    return yaml.safe_load((ROOT / "configuration.yaml").read_text())


def _alb_attribute(resources: dict, key: str) -> str:
    attrs = resources["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    (value,) = [a["Value"] for a in attrs if a["Key"] == key]
    return value


def test_every_port_is_the_service_port(resources, container):
    makefile_port = re.search(r"^PORT \?= (\d+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_port and int(makefile_port.group(1)) == 3000
    appspec = yaml.safe_load((ROOT / "deploy" / "appspec.yaml").read_text())
    lb_info = appspec["Resources"][0]["TargetService"]["Properties"]["LoadBalancerInfo"]

    assert [p["ContainerPort"] for p in container["PortMappings"]] == [3000]
    assert resources["Service"]["Properties"]["LoadBalancers"][0]["ContainerPort"] == 3000
    assert lb_info == {"ContainerName": container["Name"], "ContainerPort": 3000}
    assert resources["Service"]["Properties"]["LoadBalancers"][0]["ContainerName"] == container["Name"]
    for tg in ("BlueTargetGroup", "GreenTargetGroup"):
        assert resources[tg]["Properties"]["Port"] == 3000
    (ingress,) = resources["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (3000, 3000)
    assert ingress["SourceSecurityGroupId"] == {"Ref": "AlbSecurityGroup"}  # from the ALB only
    assert "CidrIp" not in ingress and "CidrIpv6" not in ingress


def test_health_checks_probe_readyz_which_needs_no_key(resources, container):
    for tg in ("BlueTargetGroup", "GreenTargetGroup"):
        assert resources[tg]["Properties"]["HealthCheckPath"] == "/readyz"
    assert match("/readyz")[0].public
    probe = container["HealthCheck"]["Command"]
    assert probe[0] == "CMD" and "curl" not in " ".join(probe)
    assert "'http://127.0.0.1:3000/readyz'" in probe[-1]
    compile(probe[-1], "<health check>", "exec")  # the python -c program is valid Python


def test_health_check_numbers(resources, container, configuration):
    for tg in ("BlueTargetGroup", "GreenTargetGroup"):
        props = resources[tg]["Properties"]
        assert props["TargetType"] == "ip"
        assert props["HealthCheckIntervalSeconds"] == 30
        assert props["UnhealthyThresholdCount"] == 3
        assert props["HealthyThresholdCount"] == 2
        assert props["Matcher"] == {"HttpCode": "200"}
        assert props["HealthCheckTimeoutSeconds"] < props["HealthCheckIntervalSeconds"]
        (delay,) = [a["Value"] for a in props["TargetGroupAttributes"]
                    if a["Key"] == "deregistration_delay.timeout_seconds"]
        # draining outlasts the longest request the server lets run
        assert int(delay) > configuration["services"]["FraudScorer"]["traffic"]["timeout"]
    check = container["HealthCheck"]
    assert (check["Interval"], check["Retries"]) == (30, 3) and check["Timeout"] < check["Interval"]
    grace = resources["Service"]["Properties"]["HealthCheckGracePeriodSeconds"]
    assert grace == 60 and grace >= check["StartPeriod"]


def test_blue_and_green_target_groups_are_identical(resources):
    assert resources["BlueTargetGroup"]["Properties"] == resources["GreenTargetGroup"]["Properties"]


def test_every_variable_the_template_sets_is_one_the_service_reads(container):
    read_by_settings = {
        f"FRAUD_{name.upper()}" for name, field in Settings.model_fields.items()
        if field.validation_alias is None
    } | {"API_KEY", "FRAUD_ENV_FILE"}  # the legacy alias; settings.env_file()
    names = [e["Name"] for e in container["Environment"]] + [s["Name"] for s in container["Secrets"]]
    assert len(names) == len(set(names))
    for name in names:
        assert name.startswith("BENTOML_") or name in read_by_settings, f"{name}: nothing reads it"
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["BENTOML_CONFIG"] == "/home/bentoml/bento/src/configuration.yaml"
    assert env["FRAUD_ENV_FILE"] == ""
    assert env["BENTOML_DO_NOT_TRACK"] == "True"


def test_api_keys_come_from_the_secret_only(resources, container, monkeypatch):
    assert not SECRET_NAMES & {e["Name"] for e in container["Environment"]}
    assert container["Secrets"] == [{"Name": "FRAUD_API_KEYS", "ValueFrom": {"Ref": "ApiKeysSecretArn"}}]
    # the name is one the service reads: a comma-separated secret becomes its keys
    for var in SECRET_NAMES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FRAUD_API_KEYS", "first-key-0123456789, second-key-0123456789")
    ring = load_keys(Settings(_env_file=None))
    assert len(ring) == 2 and ring.find(b"first-key-0123456789") and ring.find(b"second-key-0123456789")
    # the execution role reads exactly that secret
    statements = [s for p in resources["ExecutionRole"]["Properties"]["Policies"]
                  for s in p["PolicyDocument"]["Statement"] if isinstance(s, dict) and "Action" in s]
    secret_reads = [s for s in statements if "secretsmanager" in str(s["Action"])]
    assert secret_reads == [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                             "Resource": {"Ref": "ApiKeysSecretArn"}}]


def test_server_keep_alive_outlasts_the_alb_idle_timeout(container):
    """Otherwise the server closes connections the ALB is about to reuse: sporadic 502s.

    BentoML 1.4 has no configuration key for it; `bentoml serve --timeout-keep-alive N` (hidden
    option, uvicorn's timeout_keep_alive, default 5 s) is the only way, so the task passes it."""
    # in a child process: importing BentoML's CLI here would load its configuration into this one
    probe = "from bentoml_cli.cli import cli; print([p.name for p in cli.commands['serve'].params])"
    params = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env={k: v for k, v in os.environ.items() if k != "BENTOML_CONFIG"}).stdout
    assert "'timeout_keep_alive'" in params
    command = container["Command"]
    assert command[0] == "serve"
    keep_alive = int(command[command.index("--timeout-keep-alive") + 1])
    assert keep_alive > 60


def test_alb_idle_timeout_is_the_one_the_keep_alive_was_chosen_for(resources, container):
    idle = int(_alb_attribute(resources, "idle_timeout.timeout_seconds"))
    keep_alive = int(container["Command"][container["Command"].index("--timeout-keep-alive") + 1])
    assert idle == 60 and keep_alive > idle


def test_root_is_read_only_with_writable_scratch_where_bentoml_writes(resources, container):
    assert container["ReadonlyRootFilesystem"] is True
    volumes = {v["Name"] for v in resources["TaskDefinition"]["Properties"]["Volumes"]}
    mounts = {m["ContainerPath"]: m for m in container["MountPoints"]}
    assert {m["SourceVolume"] for m in mounts.values()} <= volumes
    assert "/tmp" in mounts
    assert any(p.endswith("/prometheus_multiproc_dir") for p in mounts)
    assert not any(m.get("ReadOnly") for m in mounts.values())
    # the bento itself is never shadowed by a scratch volume
    assert not any("/home/bentoml/bento".startswith(p.rstrip("/") + "/") or p == "/home/bentoml/bento"
                   for p in mounts)


def test_task_size_fits_the_configured_workers(template, configuration):
    params = template["Parameters"]
    workers = configuration["services"]["FraudScorer"]["workers"]
    # one vCPU per worker: each worker runs its event loop and the model on one thread
    assert int(params["TaskCpu"]["Default"]) == 1024 * workers
    assert workers * 250 + 250 < int(params["TaskMemory"]["Default"])  # ~250 MB a worker + main


def test_service_is_private_and_blue_green(resources):
    props = resources["Service"]["Properties"]
    assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == {"Ref": "PrivateSubnetIds"}
    assert resources["LoadBalancer"]["Properties"]["Subnets"] == {"Ref": "PublicSubnetIds"}
    assert props["DeploymentController"] == {"Type": "CODE_DEPLOY"}
    group = resources["DeploymentGroup"]["Properties"]
    rollback_on = set(group["AutoRollbackConfiguration"]["Events"])
    assert rollback_on == {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"}
    assert group["AlarmConfiguration"]["Enabled"] is True
    watched = {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]}
    assert {"LatencyP99CriticalAlarm", "ErrorRate5xxAlarm", "TaskRestartAlarm"} <= watched


def test_scaling_and_alarm_numbers(template, resources):
    params = template["Parameters"]
    assert (params["MinCapacity"]["Default"], params["MaxCapacity"]["Default"]) == (2, 10)
    cpu = resources["CpuScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert cpu["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert cpu["TargetValue"] == 70
    for policy in ("CpuScalingPolicy", "RequestCountScalingPolicy"):
        config = resources[policy]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        assert config["ScaleInCooldown"] == 300
    for alarm, threshold in (("LatencyP99WarningAlarm", 0.150), ("LatencyP99CriticalAlarm", 0.200)):
        props = resources[alarm]["Properties"]
        assert (props["MetricName"], props["ExtendedStatistic"], props["Threshold"]) == (
            "TargetResponseTime", "p99", threshold)
    errors = resources["ErrorRate5xxAlarm"]["Properties"]
    assert errors["Threshold"] == 1
    assert {m["MetricStat"]["Period"] for m in errors["Metrics"] if "MetricStat" in m} == {300}


def test_workflow_reads_outputs_the_stack_has(template):
    workflow = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    wanted = set(re.findall(r"\$\(out (\w+)\)", workflow))
    assert wanted and wanted <= set(template["Outputs"])
    assert template["Outputs"]["ContainerName"]["Value"] == "fraudscore"
    jobs = yaml.safe_load(workflow)["jobs"]
    assert "make loadtest LOADTEST_DURATION=20s" in str(jobs["loadtest"])
    assert "image_tag" in yaml.safe_load(workflow)[True]["workflow_dispatch"]["inputs"]  # `on:` is True


def test_ci_template_loads():
    ci = _load_template("ci.yaml")
    assert ci["Resources"]["Repository"]["Properties"]["ImageTagMutability"] == "IMMUTABLE"
