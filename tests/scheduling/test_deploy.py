"""The deployment examples under deploy/ parse, and each one runs `reporter schedule --once`.
(Docker cannot run here: the Dockerfile is only checked for its fonts and entry point.)"""
from __future__ import annotations

import ast
import configparser
import shlex
from pathlib import Path

import yaml
from croniter import croniter

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ONCE = "reporter schedule --once"


def test_crontab_line_is_valid_and_runs_the_scheduler_once():
    entries = [line for line in (DEPLOY / "cron" / "reporter").read_text().splitlines()
               if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(entries) == 1
    fields = entries[0].split(None, 6)
    assert croniter.is_valid(" ".join(fields[:5]))
    user, command = fields[5], fields[6]
    assert user == "reporter"
    assert ONCE in command and "/etc/reporter/env" in command
    shlex.split(command)  # quotes balance


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_systemd_service_and_timer():
    service = read_unit("reporter-schedule.service")
    assert service["Service"]["Type"] == "oneshot"
    assert ONCE in service["Service"]["ExecStart"]
    assert service["Service"]["EnvironmentFile"] == "/etc/reporter/env"
    assert service["Service"]["KillSignal"] == "SIGTERM"
    timer = read_unit("reporter-schedule.timer")
    assert timer["Timer"]["Unit"] == "reporter-schedule.service"
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_kubernetes_cronjob_forbids_overlap_and_runs_the_scheduler_once():
    job = yaml.safe_load((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "CronJob")
    spec = job["spec"]
    assert croniter.is_valid(spec["schedule"])
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < 300, "shorter than the schedule's interval"
    [container] = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert " ".join(["reporter", *container["args"]]).startswith(ONCE)
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["REPORTER_LEDGER_URL"]["valueFrom"]


def test_airflow_dag_compiles_and_calls_the_scheduler_once():
    source = (DEPLOY / "airflow" / "reporter_schedule.py").read_text()
    tree = compile(source, "reporter_schedule.py", "exec", ast.PyCF_ONLY_AST)
    compile(tree, "reporter_schedule.py", "exec")
    commands = [kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                for kw in node.keywords if kw.arg == "bash_command"]
    assert len(commands) == 1 and commands[0].startswith(ONCE)
    dag_kwargs = {kw.arg: kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                  and getattr(node.func, "id", "") == "DAG" for kw in node.keywords}
    assert ast.literal_eval(dag_kwargs["catchup"]) is False and ast.literal_eval(dag_kwargs["max_active_runs"]) == 1


def test_dockerfile_installs_the_fonts_and_runs_reporter():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    for package in ("fonts-noto-core", "fonts-noto-cjk", "libpango-1.0-0", "libharfbuzz-subset0"):
        assert package in dockerfile
    assert 'ENTRYPOINT ["reporter"]' in dockerfile
    assert 'CMD ["schedule", "--once"' in dockerfile


def test_readme_documents_each_deployment_file():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Scheduling and deployment"):]
    for path in ("deploy/cron/reporter", "deploy/systemd/reporter-schedule.service",
                 "deploy/systemd/reporter-schedule.timer", "deploy/kubernetes/cronjob.yaml",
                 "deploy/airflow/reporter_schedule.py", "Dockerfile"):
        assert path in section
        assert (ROOT / path).is_file()
