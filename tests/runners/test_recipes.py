"""The recipes of docs/orchestrators.md, as written: their YAML parsed, the preflight
commands in it run against the sandbox vendor (so each verdict's exit code is the one the
runner acts on), the cron script run with its lock held and free, and the Python of the
runners not installed here (Dagster, Temporal) compiled."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from preflight.api import Preflight
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from tests.http_support import LiveServer
from tests.support import upgrade_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "orchestrators.md"
BIN = Path(sys.executable).parent
#: The jobs a recipe runs, as a stand-in: two outcomes as JSON Lines, like the docs' own.
RUN_JOBS = (
    "#!/bin/sh\n"
    'echo \'{"job_id": "job-1", "status": "succeeded", "cost": "10"}\'\n'
    'echo \'{"job_id": "job-2", "status": "succeeded", "cost": "5"}\'\n'
)


@dataclass(frozen=True)
class Block:
    section: str
    language: str
    text: str


def _blocks() -> list[Block]:
    blocks: list[Block] = []
    section = ""
    lines = DOC.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("```") and len(line) > 3:
            end = lines.index("```", i + 1)
            blocks.append(Block(section, line[3:].strip(), "\n".join(lines[i + 1 : end]) + "\n"))
            i = end
        i += 1
    return blocks


def _one(section: str, language: str) -> str:
    [block] = [b for b in _blocks() if b.section == section and b.language == language]
    return block.text


def test_every_recipe_block_is_one_this_test_knows() -> None:
    kinds = {(b.section, b.language) for b in _blocks()}
    assert kinds == {
        ("Celery", "python"),
        ("Prefect", "python"),
        ("Dagster", "python"),
        ("Argo Workflows", "yaml"),
        ("Kubernetes Job", "yaml"),
        ("GitHub Actions", "yaml"),
        ("cron, with flock", "text"),
        ("cron, with flock", "sh"),
        ("Temporal", "python"),
    }


@pytest.mark.parametrize("section", ["Celery", "Prefect", "Dagster", "Temporal"])
def test_the_python_recipes_compile(section: str) -> None:
    compile(_one(section, "python"), f"{DOC}:{section}", "exec")


def test_the_celery_and_prefect_recipes_import_what_exists() -> None:
    import preflight.celery
    import preflight.prefect

    for section, module in (("Celery", preflight.celery), ("Prefect", preflight.prefect)):
        source = _one(section, "python")
        names = re.findall(rf"from {module.__name__} import \(?([^)]*?)\)?\n\n", source, re.S)
        assert names, section
        for name in re.findall(r"\w+", names[0]):
            assert hasattr(module, name), f"{section}: {name}"


# ---------------------------------------------------------------- running the commands


@dataclass
class Shell:
    """Runs a recipe's command as the runner would: a clean environment, preflight on PATH,
    ``run_jobs`` a stand-in, local mode on a SQLite file unless told otherwise."""

    tmp: Path
    sandbox: SandboxServer
    env: dict[str, str]

    def run(self, command: list[str] | str, **env: str) -> subprocess.CompletedProcess[str]:
        args = ["sh", "-c", command] if isinstance(command, str) else command
        return subprocess.run(
            args,
            env={**self.env, **env},
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def shell(tmp_path: Path, sandbox: SandboxServer) -> Shell:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "run_jobs").write_text(RUN_JOBS)
    (bin_dir / "run_jobs").chmod(0o755)
    database = f"sqlite:///{tmp_path / 'preflight.db'}"
    upgrade_schema(database)
    return Shell(
        tmp_path,
        sandbox,
        {
            "PATH": f"{bin_dir}:{BIN}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PREFLIGHT_DATABASE_URL": database,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_BACKOFF_MAX": "0.05",
        },
    )


def _ledger(shell: Shell) -> Preflight:
    from tests.runners.conftest import preflight_settings

    return Preflight(preflight_settings(shell.env["PREFLIGHT_DATABASE_URL"], shell.sandbox))


def _verdicts(shell: Shell, run_check: Any) -> dict[str, int]:
    """The exit code a check command gives for each verdict, on the sandbox."""
    codes = {"go": run_check("b-go").returncode}
    shell.sandbox.set_balance(credits=Decimal(30))
    codes["insufficient"] = run_check("b-short").returncode
    shell.sandbox.inject({"status": 503, "count": -1})
    codes["unavailable"] = run_check("b-down").returncode
    shell.sandbox.reset()
    shell.sandbox.inject({"status": 401, "count": -1})
    codes["auth_failed"] = run_check("b-auth").returncode
    shell.sandbox.reset()
    shell.sandbox.set_balance(credits=Decimal(1000))
    return codes


EXPECTED = {"go": 0, "insufficient": 10, "unavailable": 13, "auth_failed": 11}


def _argo_retries(expression: str, code: int) -> bool:
    match = re.fullmatch(r"asInt\(lastRetry\.exitCode\) == (\d+)", expression)
    assert match, f"an expression this test cannot read: {expression}"
    return code == int(match.group(1))


def test_argo_retries_only_unavailable_and_its_steps_run(shell: Shell) -> None:
    workflow = yaml.safe_load(_one("Argo Workflows", "yaml"))
    assert workflow["kind"] == "Workflow"
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    steps = [step[0]["template"] for step in templates["nightly"]["steps"]]
    assert steps == ["preflight-check", "run-jobs", "preflight-finish"]
    check = templates["preflight-check"]

    def run_check(name: str) -> subprocess.CompletedProcess[str]:
        command = [
            part.replace("{{workflow.name}}", name) for part in check["container"]["command"]
        ]
        return shell.run(command)

    codes = _verdicts(shell, run_check)

    assert codes == EXPECTED
    strategy = check["retryStrategy"]
    assert strategy["retryPolicy"] == "Always"
    retried = {v for v, code in codes.items() if _argo_retries(strategy["expression"], code)}
    assert retried == {"unavailable"}
    # go: the next steps, as written, record and finish the batch
    for template in ("run-jobs", "preflight-finish"):
        command = templates[template]["container"]["command"]
        result = shell.run([part.replace("{{workflow.name}}", "b-go") for part in command])
        assert result.returncode == 0, result.stderr
    with _ledger(shell) as ledger:
        report = ledger.show("b-go")
    assert (report.outcomes.total, report.outcomes.cost) == (2, Decimal(15))
    assert report.batch.status == "finished"


def test_the_kubernetes_job_fails_at_once_on_refusals_and_retries_unavailable(
    shell: Shell,
) -> None:
    job = yaml.safe_load(_one("Kubernetes Job", "yaml"))
    assert job["kind"] == "Job"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    [init] = pod["initContainers"]
    [main] = pod["containers"]
    [rule] = job["spec"]["podFailurePolicy"]["rules"]
    assert (rule["action"], rule["onExitCodes"]["containerName"]) == ("FailJob", init["name"])
    fail_job = set(rule["onExitCodes"]["values"])

    def run_check(name: str) -> subprocess.CompletedProcess[str]:
        return shell.run(init["command"], BATCH=name)

    codes = _verdicts(shell, run_check)

    assert codes == EXPECTED
    assert {v for v, code in codes.items() if code in fail_job} == {"insufficient", "auth_failed"}
    assert codes["unavailable"] not in fail_job  # counted against backoffLimit: retried
    assert job["spec"]["backoffLimit"] > 0
    result = shell.run(main["command"], BATCH="b-go")
    assert result.returncode == 0, result.stderr
    with _ledger(shell) as ledger:
        assert ledger.show("b-go").batch.status == "finished"


def _github_steps(server: LiveServer, token: str, run_id: str) -> tuple[dict[str, str], list[Any]]:
    workflow = yaml.safe_load(_one("GitHub Actions", "yaml"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "schedule" in triggers
    [job] = workflow["jobs"].values()
    values = {
        "vars.PREFLIGHT_SERVER_URL": server.url,
        "secrets.PREFLIGHT_SERVER_TOKEN": token,
        "github.run_id": run_id,
    }

    def expand(text: str) -> str:
        return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: values[m.group(1)], text)

    env = {name: expand(str(value)) for name, value in job["env"].items()}
    return env, job["steps"]


def _run_github_job(shell: Shell, env: dict[str, str], steps: list[Any]) -> dict[str, str]:
    """The job's steps as a runner runs them (``bash -e``, one after another, a failed step
    skipping the next ones unless their ``if`` says otherwise); ``sleep`` is recorded, not
    slept. The install step is left out: preflight is already on PATH."""
    outcomes: dict[str, str] = {}
    failed = False
    local = {k: v for k, v in shell.env.items() if not k.startswith("PREFLIGHT_")}
    for step in steps:
        if step["name"] == "install":
            assert step["run"].startswith("pip install")
            continue
        condition = step.get("if")
        if condition is None:
            runs = not failed
        else:
            assert condition == "always() && steps.jobs.outcome != 'skipped'"
            runs = outcomes.get("jobs") != "skipped"
        if not runs:
            outcomes[step.get("id", step["name"])] = "skipped"
            continue
        script = 'sleep() { echo "$1" >> sleeps; }\n' + step["run"]
        result = subprocess.run(
            ["bash", "-e", "-c", script],
            env={**local, **env},
            cwd=shell.tmp,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        outcomes[step.get("id", step["name"])] = (
            "success" if result.returncode == 0 else (f"failure {result.returncode}")
        )
        failed = failed or result.returncode != 0
    return outcomes


def test_github_actions_runs_checks_and_finishes_through_a_server(
    shell: Shell, server: LiveServer, ledger: Preflight
) -> None:
    token = server.token("github", "check,record,read")
    env, steps = _github_steps(server, token, "4242")

    outcomes = _run_github_job(shell, env, steps)

    assert outcomes == {"check": "success", "jobs": "success", "finish": "success"}
    report = ledger.show("nightly/4242")
    assert (report.outcomes.total, report.batch.status) == (2, "finished")


def test_github_actions_stops_on_insufficient_and_retries_unavailable(
    shell: Shell, server: LiveServer, sandbox: SandboxServer, ledger: Preflight
) -> None:
    token = server.token("github", "check,record,read")
    sandbox.set_balance(credits=Decimal(30))
    env, steps = _github_steps(server, token, "1")
    assert _run_github_job(shell, env, steps) == {
        "check": "failure 10",
        "jobs": "skipped",
        "finish": "skipped",
    }
    assert not (shell.tmp / "sleeps").exists()  # a refusal is never retried

    sandbox.set_balance(credits=Decimal(100))
    sandbox.inject({"status": 503, "count": -1})
    env, steps = _github_steps(server, token, "2")
    assert _run_github_job(shell, env, steps)["check"] == "failure 13"
    assert (shell.tmp / "sleeps").read_text().split() == ["30", "60", "120"]
    assert ledger.show("nightly/1").outcomes.total == 0


def test_the_cron_script_skips_while_locked_and_runs_when_free(
    shell: Shell, tmp_path: Path
) -> None:
    script = tmp_path / "nightly-batch.sh"
    script.write_text(_one("cron, with flock", "sh"))
    crontab = _one("cron, with flock", "text").split()
    assert crontab[:5] == ["0", "2", "*", "*", "*"]
    lock = tmp_path / "nightly.lock"

    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the previous run, still going
        skipped = shell.run(["sh", str(script)], LOCK=str(lock))
    assert (skipped.returncode, skipped.stdout.strip()) == (
        0,
        "the previous run still holds the lock: skipped",
    )
    assert shell.sandbox.request_counts["GET /api/open/v1/profile"] == 0

    ran = shell.run(["sh", str(script)], LOCK=str(lock))
    assert ran.returncode == 0, ran.stderr
    shell.sandbox.set_balance(credits=Decimal(30))
    short = shell.run(["sh", str(script)], LOCK=str(lock))
    assert short.returncode == 10  # the same day's batch again, now short: nothing recorded
    with _ledger(shell) as ledger:
        [listing] = ledger.batches()
    assert listing.batch.batch_id.startswith("nightly-")
    assert (listing.outcomes.total, listing.batch.status) == (2, "finished")
    assert os.access(lock, os.F_OK)


# ---------------------------------------------------------------- Dagster and Temporal, in process


def _module(section: str, tmp_path: Path) -> Any:
    """The recipe's Python block imported as a module of its own."""
    import importlib.util

    name = "recipe_" + re.sub(r"\W", "_", section.lower())
    path = tmp_path / f"{name}.py"
    path.write_text(_one(section, "python"))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def local_mode(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> Preflight:
    """The recipes' Preflight() configured from the environment, as a runner's would be;
    the ledger on the same database."""
    for name, value in shell.env.items():
        if name.startswith("PREFLIGHT_"):
            monkeypatch.setenv(name, value)
    return _ledger(shell)


@pytest.mark.parametrize("credits", [Decimal(100), Decimal(30)])
def test_dagster_materialises_the_batch_only_behind_a_passing_check(
    credits: Decimal, local_mode: Preflight, sandbox: SandboxServer, tmp_path: Path
) -> None:
    import dagster as dg

    recipe = _module("Dagster", tmp_path)
    sandbox.set_balance(credits=credits)

    result = dg.materialize(
        [recipe.nightly_check, recipe.balance_covers_need, recipe.nightly_batch],
        resources={"preflight": recipe.PreflightResource()},
        raise_on_error=False,
    )

    materialised = {
        event.asset_key.to_user_string() for event in result.get_asset_materialization_events()
    }
    with local_mode as ledger:
        report = ledger.show(result.run_id)
    if credits >= 60:
        assert result.success
        assert materialised == {"nightly_check", "nightly_batch"}
        assert (report.outcomes.total, report.outcomes.cost) == (50, Decimal(60))
        assert report.batch.status == "finished"
    else:
        assert not result.success  # the blocking check failed
        assert materialised == {"nightly_check"}
        assert report.batch.verdict == "insufficient"
        assert report.outcomes.total == 0


def test_temporal_activities_refuse_without_retry_and_delay_a_concurrent_402(
    local_mode: Preflight, sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    recipe = _module("Temporal", tmp_path)
    environment = ActivityEnvironment()
    sandbox.set_balance(credits=Decimal(30))
    with pytest.raises(ApplicationError) as refused:
        environment.run(recipe.preflight_gate, "t-short", "60")
    assert (refused.value.type, refused.value.non_retryable) == ("insufficient", True)

    sandbox.inject({"status": 503, "count": -1})
    with pytest.raises(ApplicationError) as down:
        environment.run(recipe.preflight_gate, "t-down", "60")
    assert (down.value.type, down.value.non_retryable) == ("unavailable", False)
    sandbox.reset()

    sandbox.set_balance(credits=Decimal(100))
    assert environment.run(recipe.preflight_gate, "t-go", "60")["verdict"] == "go"
    assert recipe.RetryPolicy is not None  # the workflow's retry policies are Temporal's own

    class Vendor:  # the recipe's paid call, sent to the sandbox
        HTTPStatusError = httpx.HTTPStatusError

        @staticmethod
        def post(url: str, **_: object) -> httpx.Response:
            return httpx.post(
                f"{sandbox.url}/api/open/v1/jobs",
                json={"cost": "10"},
                headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
                timeout=10,
            )

    monkeypatch.setattr(recipe, "httpx", Vendor)
    assert environment.run(recipe.summarise, "t-go", 1) == {"cost": "10"}
    sandbox.consume(Decimal(85))  # spent outside the batch
    with pytest.raises(ApplicationError) as quota:
        environment.run(recipe.summarise, "t-go", 2)
    assert (quota.value.type, quota.value.non_retryable) == ("concurrent_consumption", False)
    assert quota.value.next_retry_delay == timedelta(minutes=10)
    with local_mode as ledger:
        assert [b.batch.verdict for b in ledger.batches()] == ["go", "unavailable", "insufficient"]
        assert ledger.show("t-go").outcomes.total == 2
