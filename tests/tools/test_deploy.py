"""Packaging and deploying the app with the real chalice CLI, against an emulated AWS only.

- ``chalice package`` with the merge template from ``scripts/deployment.py`` (as ``make package``
  does), into a temporary directory: the SAM template is checked for what the app relies on
  (function settings, the worker reference, least-privilege roles, no async retries) and
  linted with cfn-lint.
- ``chalice deploy``, ``chalice url`` and ``chalice delete`` against a moto server on 127.0.0.1
  (``tests/moto_server.py``), and ``scripts/deployment.py configure-worker`` after a deploy
  (the async-invoke policy, and the opt-in concurrency cap with Lambda's refusal, which moto
  reproduces when ``MOTO_LAMBDA_CONCURRENCY_QUOTA`` is set). What exists is checked with boto3
  against the same server.
- ``make deploy`` as a user runs it: it creates the claims table first (``ensure-table``:
  created once, found afterwards, its TTL turned on, a table the worker could not use refused in
  one line); the zip it adds bytecode to is the one ``chalice deploy`` ships, also after a
  rollback to inputs whose (older) zip already exists; without AWS credentials or with an
  unusable ``WORKER_MAX_CONCURRENCY`` it says so in one line and does nothing else.
- ``make delete``: ``chalice delete``, then the table is deleted with ``YES=1`` or a "y" on a
  terminal (a pseudo-terminal here), and kept with ``YES=0``, any other answer, or from a pipe
  (which says how to delete it). Waiting for a table to become ACTIVE, which moto never makes
  anyone do (its tables are ACTIVE at once), is checked with botocore's Stubber.

Every chalice run happens in a copy of the project, so ``.chalice/deployed`` and
``.chalice/deployments`` are never written into the repository. The copies share one
``.chalice/deployments`` directory, so the Lambda dependencies are downloaded (through pip)
once per module. Subprocesses get fake credentials, no AWS config files, and an
``AWS_ENDPOINT_URL`` on loopback: a discard port when no server is meant to be called, so a
stray call fails instead of reaching AWS.

These tests take about half a minute when pip's cache is warm, and a minute or two on a
fresh machine; each has a generous timeout for the cold case.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import hashlib
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from tests.conftest import ROOT, import_script
from tests.moto_server import ACCOUNT_ID, REGION, MotoServer, running_moto_server

pytestmark = pytest.mark.timeout(600)

BIN = Path(sys.executable).parent  # the venv's bin: chalice and cfn-lint are installed beside python
CONFIG: dict[str, Any] = json.loads((ROOT / ".chalice" / "config.json").read_text())
APP_NAME: str = CONFIG["app_name"]
FUNCTIONS = ("api_handler", "worker")  # Chalice's name for the HTTP function, and app.py's lambda function
LOGICAL_IDS = {"api_handler": "APIHandler", "worker": "Worker"}  # as `chalice package` names them
ROLE_LOGICAL_IDS = {"api_handler": "ApiHandlerRole", "worker": "WorkerRole"}
LOG_ACTIONS = frozenset({"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"})
WORKER_ARN = {"Fn::GetAtt": ["Worker", "Arn"]}
TABLE_ARN = {"Fn::GetAtt": ["ClaimsTable", "Arn"]}
# Slack accepts replies on a response_url for 30 minutes: an event older than that cannot be answered.
RESPONSE_URL_LIFETIME_SECONDS = 30 * 60
NO_SERVER = "http://127.0.0.1:9"  # the discard port: nothing listens, so any AWS call is refused


DEPLOYMENT = import_script("deployment")  # for its constants


def configured(stage: str, function: str, key: str) -> Any:
    """A per-function setting from config.json, looked up in Chalice's order of precedence."""
    stage_config = CONFIG["stages"][stage]
    for scope in (
        stage_config.get("lambda_functions", {}).get(function, {}),
        stage_config,
        CONFIG.get("lambda_functions", {}).get(function, {}),
        CONFIG,
    ):
        if key in scope:
            return scope[key]
    raise AssertionError(f"{key} is not set for {function} in stage {stage}")


def stage_variable(stage: str, name: str) -> str:
    return CONFIG["stages"][stage]["environment_variables"][name]


def table_name(stage: str) -> str:
    """The claims table: the worker's IDEMPOTENCY_TABLE, and the HTTP function's (it marks stops there)."""
    functions = CONFIG["stages"][stage]["lambda_functions"]
    name = functions["worker"]["environment_variables"]["IDEMPOTENCY_TABLE"]
    assert name == f"{APP_NAME}-{stage}-claims"
    assert functions["api_handler"]["environment_variables"]["IDEMPOTENCY_TABLE"] == name
    return name


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_file(stage: str, function: str) -> dict[str, Any]:
    return json.loads((ROOT / ".chalice" / configured(stage, function, "iam_policy_file")).read_text())


def deployed_name(stage: str, function: str) -> str:
    """What `chalice deploy` names a function and its role."""
    return f"{APP_NAME}-{stage}" if function == "api_handler" else f"{APP_NAME}-{stage}-{function}"


def role_name(stage: str, function: str) -> str:
    return f"{APP_NAME}-{stage}-{function}"


def runtime_version(runtime: str) -> tuple[int, int]:
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtime)
    assert match, f"not a Python runtime: {runtime}"
    return int(match[1]), int(match[2])


def grants(document: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (action, resource) pair a policy document allows; fails on anything but plain Allow statements."""
    pairs: set[tuple[str, str]] = set()
    for statement in document["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, f"unexpected keys in {statement}"
        assert statement["Effect"] == "Allow", statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            assert "*" not in action, f"wildcard action {action}"
            for resource in resources:
                pairs.add((action, json.dumps(resource, sort_keys=True) if isinstance(resource, dict) else resource))
    return pairs


def is_parameter_arn(resource: str, parameter: str) -> bool:
    """An SSM ARN naming exactly ``parameter`` (any region or account, but no wildcard in the name)."""
    parts = resource.split(":", 5)
    return len(parts) == 6 and parts[:3] == ["arn", "aws", "ssm"] and parts[5] == f"parameter{parameter}"


def assert_logs_only_to_lambda_groups(pairs: set[tuple[str, str]]) -> None:
    logs = {(action, resource) for action, resource in pairs if action.startswith("logs:")}
    assert {action for action, _ in logs} == LOG_ACTIONS
    for _, resource in logs:
        parts = resource.split(":", 5)
        assert parts[:3] == ["arn", "aws", "logs"] and parts[5].startswith("log-group:/aws/lambda/"), resource


def without_logs(pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(action, resource) for action, resource in pairs if not action.startswith("logs:")}


# --- running things ----------------------------------------------------------------------------


def subprocess_env(endpoint_url: str, home: Path) -> dict[str, str]:
    """This environment minus any AWS, OpenAI or Slack settings, plus fake credentials and a loopback endpoint."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "OPENAI_", "SLACK_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        # No profile, SSO or endpoint from the developer's own AWS files.
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
    )
    return env


def run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=540, check=False
    )


def run_ok(args: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = run(args, cwd, env)
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


def copy_project(destination: Path, deployments_cache: Path | None = None) -> Path:
    """What Chalice deploys, copied to ``destination``; its ``.chalice/deployments`` is the shared cache
    (or, with none given, its own, made by Chalice when it first builds a zip)."""
    project = destination / APP_NAME
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "app.py", project)
    shutil.copy2(ROOT / "requirements.txt", project)
    (project / ".chalice").mkdir()
    for path in (ROOT / ".chalice").glob("*.json"):  # config.json and the policy files
        if path.is_file():
            shutil.copy2(path, project / ".chalice")
    if deployments_cache is not None:
        (project / ".chalice" / "deployments").symlink_to(deployments_cache, target_is_directory=True)
    return project


def copy_make_project(destination: Path, deployments_cache: Path | None = None) -> Path:
    """``copy_project`` plus what ``make`` runs there: the Makefile, scripts and this venv.

    The requirements files are dated before the venv's stamp, so make installs nothing: the
    venv is this checkout's (a symlink), and a pip run from the copy would rewrite its scripts.
    """
    return add_make(copy_project(destination, deployments_cache))


def add_make(project: Path) -> Path:
    """What ``make`` needs in a project copy: the Makefile, the scripts and this venv."""
    shutil.copy2(ROOT / "Makefile", project)
    shutil.copy2(ROOT / "requirements-dev.txt", project)
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    stamp = ROOT / ".venv" / ".installed"
    stamp_time = stamp.stat().st_mtime if stamp.exists() else 0.0
    for name in ("requirements.txt", "requirements-dev.txt"):
        if (project / name).exists():
            os.utime(project / name, (stamp_time - 1, stamp_time - 1))
    return project


def without_aws_setup(env: dict[str, str]) -> dict[str, str]:
    """``env`` with no AWS credentials and no region for boto3 to find (no files, no instance role)."""
    return {
        name: value
        for name, value in env.items()
        if name not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")
    }


def own_lines(stderr: str) -> list[str]:
    """What the tools wrote to stderr, without make's own "make: *** ... Error 1" line."""
    return [line for line in stderr.splitlines() if not line.startswith("make")]


@pytest.fixture(scope="module")
def deployments_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ``.chalice/deployments`` for every project copy: pip downloads the Lambda wheels once."""
    path = tmp_path_factory.mktemp("chalice-deployments")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- chalice package ---------------------------------------------------------------------------

PACKAGE_STAGE = "prod"


@dataclass(frozen=True)
class Package:
    template: dict[str, Any]
    sam_json: Path

    def resource(self, logical_id: str) -> dict[str, Any]:
        resources = self.template["Resources"]
        assert logical_id in resources, f"{logical_id} not in the template ({', '.join(sorted(resources))})"
        return resources[logical_id]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory, deployments_cache: Path) -> Iterator[Package]:
    """``make package STAGE=prod``'s two commands, run into a temporary directory."""
    work = tmp_path_factory.mktemp("package")
    project = copy_project(work, deployments_cache)
    env = subprocess_env(NO_SERVER, work)
    merge = run_ok([BIN / "python", ROOT / "scripts" / "deployment.py", "merge-template", PACKAGE_STAGE], project, env)
    (work / "merge.json").write_text(merge.stdout)
    out = work / "out"
    run_ok(
        [BIN / "chalice", "package", "--stage", PACKAGE_STAGE, "--merge-template", work / "merge.json", out],
        project,
        env,
    )
    yield Package(json.loads((out / "sam.json").read_text()), out / "sam.json")
    shutil.rmtree(work, ignore_errors=True)


def test_package_has_both_functions_as_configured(package: Package) -> None:
    """Both functions are in the template, on Python 3.12 or newer, with config.json's timeout and memory."""
    for function, logical_id in LOGICAL_IDS.items():
        resource = package.resource(logical_id)
        properties = resource["Properties"]
        assert resource["Type"] == "AWS::Serverless::Function"
        assert runtime_version(properties["Runtime"]) >= (3, 12)
        assert properties["Timeout"] == configured(PACKAGE_STAGE, function, "lambda_timeout")
        assert properties["MemorySize"] == configured(PACKAGE_STAGE, function, "lambda_memory_size")
        assert properties["Role"] == {"Fn::GetAtt": [ROLE_LOGICAL_IDS[function], "Arn"]}
    assert package.resource("APIHandler")["Properties"]["Handler"] == "app.app"
    assert package.resource("Worker")["Properties"]["Handler"] == "app.worker"


def test_package_points_the_http_function_at_the_worker(package: Package) -> None:
    """The HTTP function finds the worker by CloudFormation's name for it, and keeps the stage's variables."""
    variables = package.resource("APIHandler")["Properties"]["Environment"]["Variables"]
    assert variables["WORKER_FUNCTION_NAME"] == {"Ref": "Worker"}
    # The merge added one variable; it did not replace the stage's.
    for name, value in CONFIG["stages"][PACKAGE_STAGE]["environment_variables"].items():
        assert variables[name] == value


def test_package_gives_each_function_only_its_own_permissions(package: Package) -> None:
    """The HTTP role may invoke only the worker and read only the signing secret; the worker role may
    read only the OpenAI key and the Slack bot token, and use only the claims table with the item
    actions its policy file names; both may write logs; there are no other grants, roles or managed
    policies."""
    roles = {
        logical_id
        for logical_id, resource in package.template["Resources"].items()
        if resource["Type"].startswith("AWS::IAM::")
    }
    assert roles == set(ROLE_LOGICAL_IDS.values())
    allowed: dict[str, set[tuple[str, str]]] = {}
    for function, logical_id in ROLE_LOGICAL_IDS.items():
        properties = package.resource(logical_id)["Properties"]
        assert "ManagedPolicyArns" not in properties
        assert len(properties["Policies"]) == 1
        allowed[function] = grants(properties["Policies"][0]["PolicyDocument"])
        assert_logs_only_to_lambda_groups(allowed[function])

    api = without_logs(allowed["api_handler"])
    signing_secret = stage_variable(PACKAGE_STAGE, "SLACK_SIGNING_SECRET_PARAMETER")
    assert {action for action, _ in api} == {"lambda:InvokeFunction", "ssm:GetParameter", "dynamodb:PutItem"}
    assert ("lambda:InvokeFunction", json.dumps(WORKER_ARN, sort_keys=True)) in api
    assert ("dynamodb:PutItem", json.dumps(TABLE_ARN, sort_keys=True)) in api  # stop marks, in the stack's table
    [ssm_resource] = [resource for action, resource in api if action == "ssm:GetParameter"]
    assert is_parameter_arn(ssm_resource, signing_secret), ssm_resource
    assert len(api) == 3, api

    worker = without_logs(allowed["worker"])
    table_actions = {action for action, _ in grants(policy_file(PACKAGE_STAGE, "worker")) if "dynamodb:" in action}
    assert table_actions, "the worker's policy file grants nothing on the claims table"
    assert {action for action, _ in worker} == {"ssm:GetParameter"} | table_actions
    assert {(action, resource) for action, resource in worker if action in table_actions} == {
        (action, json.dumps(TABLE_ARN, sort_keys=True)) for action in table_actions
    }
    assert len(worker) == 2 + len(table_actions), worker
    for name in ("OPENAI_API_KEY_PARAMETER", "SLACK_BOT_TOKEN_PARAMETER"):
        parameter = stage_variable(PACKAGE_STAGE, name)
        assert any(is_parameter_arn(resource, parameter) for _, resource in worker), (parameter, worker)


def test_package_restates_the_worker_role_from_its_policy_file(package: Package) -> None:
    """The merge replaces the role's policy list: what it restates is the policy file word for word,
    but for the table statement's resource, which becomes the declared table's ARN."""
    [restated] = package.resource("WorkerRole")["Properties"]["Policies"]
    expected = policy_file(PACKAGE_STAGE, "worker")
    for statement in expected["Statement"]:
        if any(action.startswith("dynamodb:") for action in as_list(statement["Action"])):
            assert statement["Resource"] == f"arn:aws:dynamodb:*:*:table/{table_name(PACKAGE_STAGE)}"
            statement["Resource"] = TABLE_ARN
    assert restated == {"PolicyName": "WorkerRolePolicy", "PolicyDocument": expected}


def test_package_declares_the_claims_table_and_names_it_to_both_functions(package: Package) -> None:
    """An on-demand table keyed by pk (S) with TTL on expires_at, deleted with the stack; both
    functions find it by Ref (CloudFormation names it), beside the stage's other variables (the HTTP
    function writes stop marks there)."""
    table = package.resource("ClaimsTable")
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Delete", "Delete")
    assert table["Properties"] == {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
    }
    worker_variables = package.resource("Worker")["Properties"]["Environment"]["Variables"]
    assert worker_variables["IDEMPOTENCY_TABLE"] == {"Ref": "ClaimsTable"}
    for name, value in CONFIG["stages"][PACKAGE_STAGE]["environment_variables"].items():
        assert worker_variables[name] == value
    assert package.resource("APIHandler")["Properties"]["Environment"]["Variables"]["IDEMPOTENCY_TABLE"] == {
        "Ref": "ClaimsTable"
    }


def test_package_turns_off_async_retries_for_the_worker(package: Package) -> None:
    """A retried worker would answer twice, and an answer after the response_url expires reaches nobody."""
    resource = package.resource("WorkerEventInvokeConfig")
    properties = resource["Properties"]
    assert resource["Type"] == "AWS::Lambda::EventInvokeConfig"
    assert properties["FunctionName"] == {"Ref": "Worker"}
    assert properties["Qualifier"] == "$LATEST"
    assert properties["MaximumRetryAttempts"] == 0
    assert properties["MaximumEventAgeInSeconds"] == DEPLOYMENT.MAXIMUM_EVENT_AGE_SECONDS
    assert 60 <= properties["MaximumEventAgeInSeconds"] <= RESPONSE_URL_LIFETIME_SECONDS


def test_package_passes_cfn_lint(package: Package) -> None:
    """cfn-lint, with its SAM transform, finds nothing in the template: no error, warning or note.

    cfn-lint's exit code ORs 2 (errors), 4 (warnings) and 8 (informational). Errors must fail.
    Warnings fail too: the template is clean today, and cfn-lint's warnings on a template like
    this one (a deprecated runtime, an unused or mistyped property) each mean something to fix
    before a deploy. A finding that is deliberate should be silenced by rule id in the template
    metadata, where it is reviewed, not by this test.
    """
    out = package.sam_json.parent
    result = run([BIN / "cfn-lint", package.sam_json.name], out, subprocess_env(NO_SERVER, out))
    assert result.returncode == 0, f"cfn-lint exited {result.returncode}:\n{result.stdout}{result.stderr}"


# --- chalice deploy, url and delete against moto --------------------------------------------------

DEPLOY_STAGE = "dev"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    with running_moto_server() as server:
        yield server


@dataclass(frozen=True)
class Deployment:
    """A `chalice deploy --stage dev` that has finished, in a project copy, against ``moto``."""

    project: Path
    env: dict[str, str]
    moto: MotoServer

    def chalice(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([BIN / "chalice", *args], self.project, self.env)

    def recorded(self) -> dict[str, dict[str, Any]]:
        """Chalice's record of what it deployed (``.chalice/deployed/dev.json``), by resource name."""
        deployed = json.loads((self.project / ".chalice" / "deployed" / f"{DEPLOY_STAGE}.json").read_text())
        return {resource["name"]: resource for resource in deployed["resources"]}


@pytest.fixture
def deployment(
    moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory, deployments_cache: Path
) -> Iterator[Deployment]:
    """A fresh deploy into an empty moto; afterwards moto is emptied and the copy removed."""
    moto_server.reset()
    work = tmp_path_factory.mktemp("deploy")
    deployment = Deployment(copy_project(work, deployments_cache), subprocess_env(moto_server.url, work), moto_server)
    result = deployment.chalice("deploy", "--stage", DEPLOY_STAGE)
    assert result.returncode == 0, f"chalice deploy exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    yield deployment
    moto_server.reset()
    shutil.rmtree(work, ignore_errors=True)


def test_deploy_creates_both_functions_as_configured(deployment: Deployment) -> None:
    """`chalice deploy` creates mameka-dev and mameka-dev-worker with config.json's runtime, timeout and memory."""
    lambda_ = deployment.moto.client("lambda")
    names = {function["FunctionName"] for function in lambda_.list_functions()["Functions"]}
    assert names == {deployed_name(DEPLOY_STAGE, function) for function in FUNCTIONS}
    recorded = deployment.recorded()
    for function in FUNCTIONS:
        settings = lambda_.get_function_configuration(FunctionName=deployed_name(DEPLOY_STAGE, function))
        assert runtime_version(settings["Runtime"]) >= (3, 12)
        assert settings["Timeout"] == configured(DEPLOY_STAGE, function, "lambda_timeout")
        assert settings["MemorySize"] == configured(DEPLOY_STAGE, function, "lambda_memory_size")
        assert settings["Handler"] == ("app.app" if function == "api_handler" else "app.worker")
        assert recorded[function]["lambda_arn"] == settings["FunctionArn"]


def test_deploy_gives_each_function_a_role_with_its_policy_file(deployment: Deployment) -> None:
    """Each function runs as its own role, whose only policy is its .chalice policy file, word for word."""
    lambda_ = deployment.moto.client("lambda")
    iam = deployment.moto.client("iam")
    for function in FUNCTIONS:
        name = role_name(DEPLOY_STAGE, function)
        role = iam.get_role(RoleName=name)["Role"]
        settings = lambda_.get_function_configuration(FunctionName=deployed_name(DEPLOY_STAGE, function))
        assert settings["Role"] == role["Arn"]
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        [policy_name] = iam.list_role_policies(RoleName=name)["PolicyNames"]
        document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
        assert document == policy_file(DEPLOY_STAGE, function)


def test_deployed_http_function_can_reach_the_deployed_worker(deployment: Deployment) -> None:
    """WORKER_FUNCTION_NAME is the real worker's name, and the roles' ARN patterns cover the real ARNs.

    Under `chalice deploy` the worker's name is hard-coded in config.json and the policy files;
    this is what catches a rename of the app, the stage or the function that misses one of them.
    """
    lambda_ = deployment.moto.client("lambda")
    worker = lambda_.get_function_configuration(FunctionName=deployment.recorded()["worker"]["lambda_arn"])
    api = lambda_.get_function_configuration(FunctionName=deployed_name(DEPLOY_STAGE, "api_handler"))
    variables = api["Environment"]["Variables"]
    assert variables["WORKER_FUNCTION_NAME"] == worker["FunctionName"]

    def allows(function: str, action: str, arn: str) -> bool:
        return any(
            granted == action and fnmatch.fnmatchcase(arn, pattern)
            for granted, pattern in grants(policy_file(DEPLOY_STAGE, function))
        )

    assert allows("api_handler", "lambda:InvokeFunction", worker["FunctionArn"])
    parameter_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter"
    assert allows("api_handler", "ssm:GetParameter", parameter_arn + variables["SLACK_SIGNING_SECRET_PARAMETER"])
    worker_variables = worker["Environment"]["Variables"]
    assert allows("worker", "ssm:GetParameter", parameter_arn + worker_variables["OPENAI_API_KEY_PARAMETER"])
    assert allows("worker", "ssm:GetParameter", parameter_arn + worker_variables["SLACK_BOT_TOKEN_PARAMETER"])
    assert not allows("worker", "ssm:GetParameter", parameter_arn + variables["SLACK_SIGNING_SECRET_PARAMETER"])
    # Only the worker calls Slack's Web API: the HTTP function may not read the bot token.
    assert not allows("api_handler", "ssm:GetParameter", parameter_arn + worker_variables["SLACK_BOT_TOKEN_PARAMETER"])
    # Only the worker claims jobs, counts questions and reads stop marks, in its stage's table; the
    # HTTP function only puts stop marks there.
    assert worker_variables["IDEMPOTENCY_TABLE"] == table_name(DEPLOY_STAGE) == variables["IDEMPOTENCY_TABLE"]
    table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table_name(DEPLOY_STAGE)}"
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"):
        assert allows("worker", action, table_arn)
        assert not allows("worker", action, table_arn.replace(DEPLOY_STAGE, "prod"))
        assert allows("api_handler", action, table_arn) == (action == "dynamodb:PutItem")
    assert not allows("api_handler", "dynamodb:PutItem", table_arn.replace(DEPLOY_STAGE, "prod"))


def test_redeploy_updates_in_place(deployment: Deployment) -> None:
    """A second `chalice deploy` updates the same REST API and functions (PutRestApi), creating nothing new."""
    before = deployment.recorded()
    result = deployment.chalice("deploy", "--stage", DEPLOY_STAGE)
    assert result.returncode == 0, f"chalice deploy exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    after = deployment.recorded()
    assert after["rest_api"]["rest_api_id"] == before["rest_api"]["rest_api_id"]
    assert {name: after[name]["lambda_arn"] for name in FUNCTIONS} == {
        name: before[name]["lambda_arn"] for name in FUNCTIONS
    }
    assert len(deployment.moto.client("lambda").list_functions()["Functions"]) == 2
    assert len(deployment.moto.client("apigateway").get_rest_apis()["items"]) == 1


def test_url_then_delete_removes_everything(deployment: Deployment) -> None:
    """`chalice url` prints the deployed API's URL; the API routes POST /slack/commands and POST
    /slack/events (the manifest's two URLs) to the HTTP function; `chalice delete` then removes the
    functions, the roles and the REST API."""
    rest_api_id = deployment.recorded()["rest_api"]["rest_api_id"]
    url = deployment.chalice("url", "--stage", DEPLOY_STAGE)
    assert url.returncode == 0, url.stderr
    assert url.stdout.strip() == f"https://{rest_api_id}.execute-api.{REGION}.amazonaws.com/api/"

    apigateway = deployment.moto.client("apigateway")
    lambda_ = deployment.moto.client("lambda")
    iam = deployment.moto.client("iam")
    resources = {item["path"]: item for item in apigateway.get_resources(restApiId=rest_api_id)["items"]}
    for path in ("/slack/commands", "/slack/events"):
        route = resources[path]
        assert set(route["resourceMethods"]) == {"POST"}, path
        integration = apigateway.get_integration(restApiId=rest_api_id, resourceId=route["id"], httpMethod="POST")
        assert integration["type"].upper() == "AWS_PROXY"  # moto keeps the document's "aws_proxy"; AWS: AWS_PROXY
        assert deployment.recorded()["api_handler"]["lambda_arn"] in integration["uri"]

    result = deployment.chalice("delete", "--stage", DEPLOY_STAGE)
    assert result.returncode == 0, f"chalice delete exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert lambda_.list_functions()["Functions"] == []
    assert apigateway.get_rest_apis()["items"] == []
    for function in FUNCTIONS:
        with pytest.raises(ClientError) as missing_function:
            lambda_.get_function(FunctionName=deployed_name(DEPLOY_STAGE, function))
        assert missing_function.value.response["Error"]["Code"] == "ResourceNotFoundException"
        with pytest.raises(ClientError) as missing_role:
            iam.get_role(RoleName=role_name(DEPLOY_STAGE, function))
        assert missing_role.value.response["Error"]["Code"] == "NoSuchEntity"
    with pytest.raises(ClientError) as missing_api:
        apigateway.get_rest_api(restApiId=rest_api_id)
    assert missing_api.value.response["Error"]["Code"] == "NotFoundException"


def test_configure_worker_turns_off_async_retries(deployment: Deployment) -> None:
    """`scripts/deployment.py configure-worker dev`, run after a deploy as `make deploy` does, stores
    MaximumRetryAttempts 0 and the short event age on the deployed worker, and on nothing else.

    moto 5 implements Put/GetFunctionEventInvokeConfig, so this runs the real script as a process
    against the moto server (no Stubber). Before the script, the worker has no such config: the
    setting comes from the script, not from `chalice deploy`.
    """
    lambda_ = deployment.moto.client("lambda")
    worker = deployed_name(DEPLOY_STAGE, "worker")
    with pytest.raises(ClientError) as before:
        lambda_.get_function_event_invoke_config(FunctionName=worker)
    assert before.value.response["Error"]["Code"] == "ResourceNotFoundException"

    result = run_ok(
        [BIN / "python", ROOT / "scripts" / "deployment.py", "configure-worker", DEPLOY_STAGE],
        deployment.project,
        deployment.env,
    )
    assert worker in result.stdout

    stored = lambda_.get_function_event_invoke_config(FunctionName=worker)
    assert stored["MaximumRetryAttempts"] == 0
    assert stored["MaximumEventAgeInSeconds"] == DEPLOYMENT.MAXIMUM_EVENT_AGE_SECONDS
    assert stored["FunctionArn"] == deployment.recorded()["worker"]["lambda_arn"]
    with pytest.raises(ClientError) as http_function:
        lambda_.get_function_event_invoke_config(FunctionName=deployed_name(DEPLOY_STAGE, "api_handler"))
    assert http_function.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_make_deploy_ships_bytecode_and_turns_off_async_retries(
    moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory, deployments_cache: Path
) -> None:
    """`make deploy STAGE=dev` as a user runs it (in a project copy, against moto): the claims
    table is created first, chalice package builds the zip, bytecode is added to it, chalice
    deploy reuses that zip, and the worker's async retries are turned off."""
    moto_server.reset()
    work = tmp_path_factory.mktemp("make-deploy")
    project = copy_make_project(work, deployments_cache)
    env = subprocess_env(moto_server.url, work)
    try:
        result = run_ok(["make", "deploy", "STAGE=dev"], project, env)
        table_line = f"created table {table_name(DEPLOY_STAGE)} (on-demand, TTL on expires_at)\n"
        assert result.stdout.startswith(table_line), result.stdout  # before anything is built
        assert_usable_table(moto_server, table_name(DEPLOY_STAGE))
        compiled = re.search(r"added \d{3,} \.pyc \(unchecked-hash", result.stdout)
        assert compiled, result.stdout
        # chalice deploy, which runs after the bytecode step, took the zip that now holds it.
        assert "Reusing existing deployment package" in result.stdout[compiled.end() :], result.stdout
        stored = moto_server.client("lambda").get_function_event_invoke_config(
            FunctionName=deployed_name(DEPLOY_STAGE, "worker")
        )
        assert stored["MaximumRetryAttempts"] == 0
    finally:
        moto_server.reset()
        shutil.rmtree(work, ignore_errors=True)


def test_package_lets_cloudformation_cap_the_worker(package: Package) -> None:
    """The worker's ReservedConcurrentExecutions comes from the WorkerMaxConcurrency parameter, and
    only when it is given (its default, empty, leaves the property out); nothing else is capped.
    cfn-lint also accepts the template with a default of 10 (``make package WORKER_MAX_CONCURRENCY=10``)."""
    parameter_name, condition = DEPLOYMENT.MAX_CONCURRENCY_PARAMETER, DEPLOYMENT.MAX_CONCURRENCY_CONDITION
    assert package.template["Parameters"][parameter_name]["Default"] == ""
    assert package.template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter_name}, ""]}]}
    assert package.resource("Worker")["Properties"]["ReservedConcurrentExecutions"] == {
        "Fn::If": [condition, {"Ref": parameter_name}, {"Ref": "AWS::NoValue"}]
    }
    assert "ReservedConcurrentExecutions" not in package.resource("APIHandler")["Properties"]

    capped = copy.deepcopy(package.template)
    capped["Parameters"][parameter_name]["Default"] = "10"
    capped_json = package.sam_json.with_name("sam-capped.json")
    capped_json.write_text(json.dumps(capped))
    result = run(
        [BIN / "cfn-lint", capped_json.name], capped_json.parent, subprocess_env(NO_SERVER, capped_json.parent)
    )
    assert result.returncode == 0, f"cfn-lint exited {result.returncode}:\n{result.stdout}{result.stderr}"


# --- what make deploy checks first, and the zip it adds bytecode to ------------------------------


def deployment_script(*args: str | Path) -> list[str | Path]:
    return [BIN / "python", ROOT / "scripts" / "deployment.py", *args]


def test_merge_template_offers_the_worker_cap_as_an_optional_parameter() -> None:
    """The parameter accepts a whole number from 1, or nothing; WORKER_MAX_CONCURRENCY becomes its default."""
    parameter = DEPLOYMENT.merge_template("prod")["Parameters"][DEPLOYMENT.MAX_CONCURRENCY_PARAMETER]
    assert parameter["Type"] == "String"
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert all(pattern.fullmatch(value) for value in ("", "1", "10", "250"))
    assert not any(pattern.fullmatch(value) for value in ("0", "-1", "ten", "1.5", "010", " 5"))
    capped = DEPLOYMENT.merge_template("prod", 10)["Parameters"][DEPLOYMENT.MAX_CONCURRENCY_PARAMETER]
    assert capped["Default"] == "10"


@pytest.mark.parametrize("value", ["0", "ten", "-1", "1.5", "10 workers"])
def test_an_unusable_worker_cap_is_one_line_before_anything_else(tmp_path: Path, value: str) -> None:
    env = {**subprocess_env(NO_SERVER, tmp_path), "WORKER_MAX_CONCURRENCY": value}
    for command in ("preflight", "merge-template"):
        result = run(deployment_script(command, "prod"), ROOT, env)
        assert result.returncode == 1, command
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"error: WORKER_MAX_CONCURRENCY must be a whole number of at least 1, or unset for no cap; got {value!r}"
        ]


def test_merge_template_takes_the_cap_from_the_environment(tmp_path: Path) -> None:
    env = {**subprocess_env(NO_SERVER, tmp_path), "WORKER_MAX_CONCURRENCY": " 12 "}
    result = run_ok(deployment_script("merge-template", "prod"), ROOT, env)
    assert json.loads(result.stdout)["Parameters"][DEPLOYMENT.MAX_CONCURRENCY_PARAMETER]["Default"] == "12"


HOW_CREDENTIALS = (
    "run `aws configure` (or `aws sso login` for an SSO profile), or set AWS_PROFILE, "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
HOW_REGION = "set AWS_DEFAULT_REGION, or a region in your profile with `aws configure`"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, f"no AWS credentials and no region found: {HOW_CREDENTIALS}; and {HOW_REGION}"),
        ({"AWS_DEFAULT_REGION": REGION}, f"no AWS credentials found: {HOW_CREDENTIALS}"),
        (KEYS, f"no AWS region set: {HOW_REGION}"),
        (
            {**KEYS, "AWS_REGION": REGION},
            f"no AWS region set: {HOW_REGION} (AWS_REGION is set, but boto3 does not read it)",
        ),
        (
            {"AWS_PROFILE": "no-such-profile", "AWS_DEFAULT_REGION": REGION},
            "AWS is not set up: The config profile (no-such-profile) could not be found",
        ),
        ({**KEYS, "AWS_DEFAULT_REGION": REGION}, None),
    ],
)
def test_preflight_says_in_one_line_what_aws_lacks(
    tmp_path: Path, settings: dict[str, str], expected: str | None
) -> None:
    """boto3's own chain decides (no AWS call is made: the endpoint is a closed port)."""
    env = {**without_aws_setup(subprocess_env(NO_SERVER, tmp_path)), **settings}
    result = run(deployment_script("preflight", "dev"), ROOT, env)
    if expected is None:
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    else:
        assert result.returncode == 1
        assert result.stderr.splitlines() == [f"error: cannot use AWS: {expected}"]


def test_make_deploy_without_aws_credentials_says_how_in_one_line_and_builds_nothing(tmp_path: Path) -> None:
    """Before, `make deploy` packaged and compiled, then chalice deploy ended in a long traceback."""
    project = copy_make_project(tmp_path)
    result = run(["make", "deploy", "STAGE=dev"], project, without_aws_setup(subprocess_env(NO_SERVER, tmp_path)))

    assert result.returncode != 0
    assert own_lines(result.stderr) == [
        f"error: cannot use AWS: no AWS credentials and no region found: {HOW_CREDENTIALS}; and {HOW_REGION}"
    ]
    assert result.stdout == ""  # no command was even echoed: none ran
    assert not (project / "out").exists()
    assert not (project / ".chalice" / "deployments").exists()


def test_make_deploy_with_an_unusable_worker_cap_builds_nothing(tmp_path: Path) -> None:
    project = copy_make_project(tmp_path)
    result = run(
        ["make", "deploy", "STAGE=prod", "WORKER_MAX_CONCURRENCY=0"], project, subprocess_env(NO_SERVER, tmp_path)
    )

    assert result.returncode != 0
    assert own_lines(result.stderr) == [
        "error: WORKER_MAX_CONCURRENCY must be a whole number of at least 1, or unset for no cap; got '0'"
    ]
    assert result.stdout == ""
    assert not (project / ".chalice" / "deployments").exists()


def chalice_package(project: Path, env: dict[str, str], out: Path) -> Path:
    """`chalice package --stage dev OUT`; returns the zip in .chalice/deployments that it built or reused,
    found by its bytes (the deployment.zip in OUT is a copy of it)."""
    run_ok([BIN / "chalice", "package", "--stage", DEPLOY_STAGE, out], project, env)
    built = (out / "deployment.zip").read_bytes()
    [cached] = [path for path in (project / ".chalice" / "deployments").glob("*.zip") if path.read_bytes() == built]
    return cached


@dataclass(frozen=True)
class Rollback:
    """A project whose version 1 zip exists and is older than version 2's, back at version 1."""

    project: Path
    first: Path  # version 1's zip: the one Chalice reuses
    second: Path  # version 2's: the newest


def roll_back(project: Path, env: dict[str, str], work: Path) -> Rollback:
    app = project / "app.py"
    original = app.read_text()
    app.write_text(original + "\n# version 1\n")
    first = chalice_package(project, env, work / "v1")
    app.write_text(original + "\n# version 2\n")
    second = chalice_package(project, env, work / "v2")
    assert second != first
    earlier = first.stat().st_mtime - 3600  # whatever the file system's time resolution
    os.utime(first, (earlier, earlier))
    app.write_text(original + "\n# version 1\n")  # the rollback
    newest = max((project / ".chalice" / "deployments").glob("*.zip"), key=lambda path: path.stat().st_mtime)
    assert newest == second
    return Rollback(project, first, second)


def test_deployment_zip_is_the_one_chalice_reuses_after_a_rollback_not_the_newest(tmp_path: Path) -> None:
    """`deployment.py deployment-zip` names the zip by Chalice's own function; here the test finds it
    by content (chalice package copies it out), and it is the older of the two. When the project
    changes after chalice package, no zip is named: chalice deploy would build another one."""
    env = subprocess_env(NO_SERVER, tmp_path)
    rollback = roll_back(copy_make_project(tmp_path), env, tmp_path)
    reused = chalice_package(rollback.project, env, tmp_path / "prebuild")
    assert reused == rollback.first
    built = tmp_path / "prebuild" / "deployment.zip"
    command: list[str | Path] = [BIN / "python", "scripts/deployment.py", "deployment-zip", DEPLOY_STAGE, built]

    found = run_ok(command, rollback.project, env)
    assert Path(found.stdout.strip()).resolve() == rollback.first.resolve()

    (rollback.project / "app.py").write_text("# version 3\n" + (rollback.project / "app.py").read_text())
    changed = run(command, rollback.project, env)
    assert changed.returncode == 1
    assert changed.stdout == ""
    [line] = changed.stderr.splitlines()
    assert line.startswith("error: chalice deploy would build ") and "the project changed in between" in line


def test_make_deploy_after_a_rollback_ships_bytecode_in_the_zip_chalice_reuses(
    moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Version 1's zip exists without bytecode (as `chalice package` or `make package` leaves it),
    version 2's is newer, and the project is back at version 1: `make deploy` adds bytecode to
    version 1's zip, both functions run exactly that zip (moto's CodeSha256), and version 2's is
    left alone. The old recipe compiled the newest zip, and shipped version 1's as source only."""
    moto_server.reset()
    work = tmp_path_factory.mktemp("rollback")
    project = copy_make_project(work)  # its own .chalice/deployments: no other test's zips
    env = subprocess_env(moto_server.url, work)
    try:
        rollback = roll_back(project, env, work)
        second_before = rollback.second.read_bytes()

        result = run_ok(["make", "deploy", "STAGE=dev"], project, env)

        with zipfile.ZipFile(rollback.first) as shipped:
            names = set(shipped.namelist())
        tag = sys.implementation.cache_tag
        assert f"__pycache__/app.{tag}.pyc" in names
        assert f"chalicelib/__pycache__/worker.{tag}.pyc" in names
        assert rollback.second.read_bytes() == second_before
        assert f"{rollback.first.name}: added" in result.stdout, result.stdout
        digest = base64.b64encode(hashlib.sha256(rollback.first.read_bytes()).digest()).decode()
        lambda_ = moto_server.client("lambda")
        for function in FUNCTIONS:
            configuration = lambda_.get_function_configuration(FunctionName=deployed_name(DEPLOY_STAGE, function))
            assert configuration["CodeSha256"] == digest, function
    finally:
        moto_server.reset()
        shutil.rmtree(work, ignore_errors=True)


def test_configure_worker_caps_the_worker_only_when_asked_and_says_what_to_do_when_refused(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WORKER_MAX_CONCURRENCY=N reserves N executions for the worker, and for nothing else.

    Lambda refuses a reservation that would leave the account fewer unreserved executions than
    its minimum. moto refuses it too, with Lambda's error, once MOTO_LAMBDA_CONCURRENCY_QUOTA is
    set (its minimum is 100): with a quota of 105, 10 is refused and 5 accepted. The refusal is one
    line saying what to do and exit 1, after the async policy is stored. A later `chalice deploy`
    without the variable removes the cap (Chalice deletes any reservation it was not given).
    """
    lambda_ = deployment.moto.client("lambda")
    worker = deployed_name(DEPLOY_STAGE, "worker")
    script = deployment_script("configure-worker", DEPLOY_STAGE)
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "105")  # read by the moto server, in this process

    refused = run(script, deployment.project, {**deployment.env, "WORKER_MAX_CONCURRENCY": "10"})

    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"error: Lambda refused WORKER_MAX_CONCURRENCY=10 for {worker}: the account would keep ")
    assert "UnreservedConcurrentExecution below its minimum value of [100]" in line  # Lambda's own words
    assert line.endswith(
        "The worker is deployed without a cap; lower WORKER_MAX_CONCURRENCY, ask AWS for a higher Lambda "
        "concurrent executions quota (Service Quotas), or leave it unset for no cap."
    )
    assert lambda_.get_function_event_invoke_config(FunctionName=worker)["MaximumRetryAttempts"] == 0
    assert lambda_.get_function_concurrency(FunctionName=worker).get("ReservedConcurrentExecutions") is None

    capped = run_ok(script, deployment.project, {**deployment.env, "WORKER_MAX_CONCURRENCY": "5"})

    assert f"{worker}: ReservedConcurrentExecutions=5" in capped.stdout
    assert lambda_.get_function_concurrency(FunctionName=worker)["ReservedConcurrentExecutions"] == 5
    http_function = deployed_name(DEPLOY_STAGE, "api_handler")
    assert lambda_.get_function_concurrency(FunctionName=http_function).get("ReservedConcurrentExecutions") is None

    monkeypatch.delenv("MOTO_LAMBDA_CONCURRENCY_QUOTA")
    redeploy = deployment.chalice("deploy", "--stage", DEPLOY_STAGE)
    assert redeploy.returncode == 0, redeploy.stderr
    assert lambda_.get_function_concurrency(FunctionName=worker).get("ReservedConcurrentExecutions") is None


# --- the claims table: ensure-table, the merge template's check, make delete ---------------------


def assert_usable_table(moto: MotoServer, name: str) -> None:
    """The table the worker needs: ACTIVE, on-demand, keyed by pk (S) alone, TTL on expires_at."""
    dynamodb = moto.client("dynamodb")
    table = dynamodb.describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def table_exists(moto: MotoServer, name: str) -> bool:
    return name in moto.client("dynamodb").list_tables()["TableNames"]


@pytest.fixture
def empty_moto(moto_server: MotoServer) -> Iterator[MotoServer]:
    moto_server.reset()
    yield moto_server
    moto_server.reset()


def test_ensure_table_creates_the_table_once_then_finds_it(empty_moto: MotoServer, tmp_path: Path) -> None:
    env = subprocess_env(empty_moto.url, tmp_path)
    name = table_name(DEPLOY_STAGE)

    first = run_ok(deployment_script("ensure-table", DEPLOY_STAGE), ROOT, env)
    assert first.stdout == f"created table {name} (on-demand, TTL on expires_at)\n"
    assert_usable_table(empty_moto, name)
    created = empty_moto.client("dynamodb").describe_table(TableName=name)["Table"]["CreationDateTime"]

    again = run_ok(deployment_script("ensure-table", DEPLOY_STAGE), ROOT, env)
    assert again.stdout == f"table {name} exists\n"
    assert empty_moto.client("dynamodb").describe_table(TableName=name)["Table"]["CreationDateTime"] == created
    assert empty_moto.client("dynamodb").list_tables()["TableNames"] == [name]  # no other stage's table


def create_table(moto: MotoServer, name: str, key: str = "pk", sort_key: str | None = None) -> None:
    keys = [{"AttributeName": key, "KeyType": "HASH"}]
    attributes = [{"AttributeName": key, "AttributeType": "S"}]
    if sort_key:
        keys.append({"AttributeName": sort_key, "KeyType": "RANGE"})
        attributes.append({"AttributeName": sort_key, "AttributeType": "S"})
    moto.client("dynamodb").create_table(
        TableName=name, KeySchema=keys, AttributeDefinitions=attributes, BillingMode="PAY_PER_REQUEST"
    )


def test_ensure_table_turns_on_the_ttl_of_a_table_made_without_it(empty_moto: MotoServer, tmp_path: Path) -> None:
    """A table made by hand (or by an older deploy) keeps its items; only its TTL is turned on."""
    name = table_name(DEPLOY_STAGE)
    create_table(empty_moto, name)
    empty_moto.client("dynamodb").put_item(TableName=name, Item={"pk": {"S": "claim#kept"}})

    result = run_ok(deployment_script("ensure-table", DEPLOY_STAGE), ROOT, subprocess_env(empty_moto.url, tmp_path))

    assert result.stdout == f"table {name} exists; turned on its TTL on expires_at\n"
    assert_usable_table(empty_moto, name)
    assert empty_moto.client("dynamodb").get_item(TableName=name, Key={"pk": {"S": "claim#kept"}}).get("Item")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            {"key": "id"},
            "table {name} exists with key schema id HASH (S); the bot needs partition key pk (S) and no sort key: "
            "delete that table or name another in IDEMPOTENCY_TABLE",
        ),
        (
            {"sort_key": "sk"},
            "table {name} exists with key schema pk HASH (S), sk RANGE (S); the bot needs partition key pk (S) "
            "and no sort key: delete that table or name another in IDEMPOTENCY_TABLE",
        ),
        (
            {"ttl": "ttl"},
            "table {name} expires items by 'ttl', not 'expires_at': turn its TTL off (a table has one TTL "
            "attribute) and run make deploy again",
        ),
    ],
    ids=["another partition key", "a sort key", "TTL on another attribute"],
)
def test_ensure_table_refuses_a_table_the_worker_could_not_use_in_one_line(
    empty_moto: MotoServer, tmp_path: Path, setup: dict[str, str], expected: str
) -> None:
    name = table_name(DEPLOY_STAGE)
    create_table(empty_moto, name, key=setup.get("key", "pk"), sort_key=setup.get("sort_key"))
    if "ttl" in setup:
        empty_moto.client("dynamodb").update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": setup["ttl"]}
        )

    result = run(deployment_script("ensure-table", DEPLOY_STAGE), ROOT, subprocess_env(empty_moto.url, tmp_path))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["error: " + expected.format(name=name)]


def stubbed_dynamodb() -> tuple[Any, Stubber]:
    client = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=NO_SERVER,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, Stubber(client)


def described(name: str, status: str) -> dict[str, Any]:
    return {
        "Table": {
            "TableName": name,
            "TableStatus": status,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        }
    }


def test_ensure_table_waits_until_the_new_table_is_active() -> None:
    """moto's tables are ACTIVE at once, so the wait is checked on botocore's Stubber: the table is
    polled while CREATING, and its TTL is turned on only once it is ACTIVE (DynamoDB refuses it before)."""
    name = "mameka-dev-claims"
    client, stubber = stubbed_dynamodb()
    stubber.add_client_error("describe_table", "ResourceNotFoundException", expected_params={"TableName": name})
    stubber.add_response("create_table", {}, None)
    for status in ("CREATING", "CREATING", "ACTIVE"):
        stubber.add_response("describe_table", described(name, status), {"TableName": name})
    stubber.add_response("describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}})
    stubber.add_response(
        "update_time_to_live",
        {"TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at"}},
        {"TableName": name, "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at"}},
    )
    polls: list[float] = []
    with stubber:
        line = DEPLOYMENT.ensure_table(client, name, timeout=60, poll=0.5, sleep=polls.append)
    stubber.assert_no_pending_responses()
    assert line == f"created table {name} (on-demand, TTL on expires_at)"
    assert polls == [0.5, 0.5]


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("CREATING", "table {name} is still CREATING after 0 s; run make deploy again later"),
        ("DELETING", "table {name} is being deleted; run make deploy again once it is gone"),
        ("INACCESSIBLE_ENCRYPTION_CREDENTIALS", "table {name} is INACCESSIBLE_ENCRYPTION_CREDENTIALS, not ACTIVE"),
    ],
    ids=["still creating", "being deleted", "unusable"],
)
def test_ensure_table_gives_up_on_a_table_that_is_not_becoming_active(status: str, message: str) -> None:
    """A bounded wait (here 0 s) on a table still CREATING, and no wait at all on one being deleted
    (just after `make delete`) or unusable: one line, and the TTL is left alone."""
    name = "mameka-dev-claims"
    client, stubber = stubbed_dynamodb()
    stubber.add_response("describe_table", described(name, status), {"TableName": name})
    with stubber, pytest.raises(DEPLOYMENT.DeployError) as error:
        DEPLOYMENT.ensure_table(client, name, timeout=0, poll=0, sleep=lambda seconds: None)
    stubber.assert_no_pending_responses()
    assert str(error.value).startswith(message.format(name=name))


def test_merge_template_refuses_a_worker_policy_that_names_another_table() -> None:
    document = json.loads(json.dumps(policy_file("prod", "worker")))
    [statement] = [s for s in document["Statement"] if "dynamodb:PutItem" in as_list(s["Action"])]
    statement["Resource"] = "arn:aws:dynamodb:*:*:table/mameka-dev-claims"
    with pytest.raises(DEPLOYMENT.DeployError, match="must name table mameka-prod-claims and nothing else"):
        DEPLOYMENT.table_statement(document, "mameka-prod-claims")
    statement["Resource"] = "arn:aws:dynamodb:*:*:table/*"
    with pytest.raises(DEPLOYMENT.DeployError, match="must name table mameka-prod-claims and nothing else"):
        DEPLOYMENT.table_statement(document, "mameka-prod-claims")


def test_make_delete_with_an_unusable_yes_deletes_nothing(tmp_path: Path) -> None:
    project = copy_make_project(tmp_path)
    result = run(["make", "delete", "STAGE=dev", "YES=maybe"], project, subprocess_env(NO_SERVER, tmp_path))

    assert result.returncode != 0
    assert own_lines(result.stderr) == [
        "error: YES must be 1 (delete the table too) or 0 (keep it), or unset to be asked; got 'maybe'"
    ]
    assert result.stdout == ""  # chalice delete did not even start


def run_on_terminal(args: list[str], cwd: Path, env: dict[str, str], typed: str) -> subprocess.CompletedProcess[str]:
    """``args`` with a pseudo-terminal as stdin, on which ``typed`` is already waiting; stdout and
    stderr captured. The answer is typed before the question: a terminal keeps it until it is read."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(terminal)
    try:
        os.write(controller, typed.encode())
        stdout, stderr = process.communicate(timeout=540)
    finally:
        os.close(controller)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def test_make_delete_removes_the_stage_then_deletes_the_table_only_when_told(deployment: Deployment) -> None:
    """`make delete STAGE=dev` runs chalice delete, then, for the claims table: from a pipe, keeps it
    and says how to delete it; on a terminal asks, and keeps it on anything but y; YES=0 keeps it
    without asking; a "y" typed on a terminal deletes it; YES=1 deletes it without asking; and a
    table that is gone is one line. Each later run finds the stage already deleted (chalice delete
    then does nothing and succeeds)."""
    project = add_make(deployment.project)
    env = {**deployment.env, "YES": ""}  # as if unset, whatever the shell running the tests has
    moto = deployment.moto
    name = table_name(DEPLOY_STAGE)
    lambda_ = moto.client("lambda")
    run_ok(deployment_script("ensure-table", DEPLOY_STAGE), project, env)
    question = f"Delete table {name} too (job claims and per-user counts, nothing else)? [y/N] "
    make_delete = ["make", "delete", f"STAGE={DEPLOY_STAGE}"]

    piped = run_ok(make_delete, project, {**env, "YES": ""})
    assert lambda_.list_functions()["Functions"] == []  # chalice delete ran first
    assert piped.stdout.endswith(f"kept table {name}: to delete it too, run `make delete STAGE=dev YES=1`\n")
    assert question not in piped.stderr
    assert table_exists(moto, name)

    for typed in ("\n", "n\n", "yes please\n", "\x04"):  # the last: Ctrl-D, end of input
        declined = run_on_terminal(make_delete, project, env, typed)
        assert declined.returncode == 0, declined.stderr
        assert declined.stderr.endswith(question), (typed, declined.stderr)
        assert declined.stdout.endswith(f"kept table {name}\n"), typed
        assert table_exists(moto, name), typed

    kept = run_on_terminal([*make_delete, "YES=0"], project, env, "y\n")
    assert (kept.returncode, kept.stdout.splitlines()[-1]) == (0, f"kept table {name}")
    assert question not in kept.stderr
    assert table_exists(moto, name)

    answered = run_on_terminal(make_delete, project, env, "Y\n")
    assert answered.returncode == 0, answered.stderr
    assert answered.stderr.endswith(question)
    assert answered.stdout.endswith(f"deleted table {name}\n")
    assert not table_exists(moto, name)

    run_ok(deployment_script("ensure-table", DEPLOY_STAGE), project, env)
    told = run_ok([*make_delete, "YES=1"], project, env)
    assert told.stdout.endswith(f"deleted table {name}\n")
    assert question not in told.stderr
    assert not table_exists(moto, name)

    gone = run_ok(make_delete, project, env)
    assert gone.stdout.endswith(f"table {name} does not exist\n")
