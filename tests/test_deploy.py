"""Packaging and deploying the app with the real chalice CLI, against an emulated AWS only.

- ``chalice package`` with the merge template from ``scripts/deployment.py`` (as ``make package``
  does), into a temporary directory: the SAM template is checked for what the app relies on
  (function settings, the worker reference, least-privilege roles, no async retries) and
  linted with cfn-lint.
- ``chalice deploy``, ``chalice url`` and ``chalice delete`` against a moto server on 127.0.0.1
  (``tests/moto_server.py``), and ``scripts/deployment.py configure-worker`` after a deploy.
  What exists is checked with boto3 against the same server.

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

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

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


def copy_project(destination: Path, deployments_cache: Path) -> Path:
    """What Chalice deploys, copied to ``destination``; its ``.chalice/deployments`` is the shared cache."""
    project = destination / APP_NAME
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "app.py", project)
    shutil.copy2(ROOT / "requirements.txt", project)
    (project / ".chalice").mkdir()
    for path in (ROOT / ".chalice").glob("*.json"):  # config.json and the policy files
        if path.is_file():
            shutil.copy2(path, project / ".chalice")
    (project / ".chalice" / "deployments").symlink_to(deployments_cache, target_is_directory=True)
    return project


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
    read only the OpenAI key and the Slack bot token; both may write logs; there are no other grants,
    roles or managed policies."""
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
    assert {action for action, _ in api} == {"lambda:InvokeFunction", "ssm:GetParameter"}
    assert ("lambda:InvokeFunction", json.dumps(WORKER_ARN, sort_keys=True)) in api
    [ssm_resource] = [resource for action, resource in api if action == "ssm:GetParameter"]
    assert is_parameter_arn(ssm_resource, signing_secret), ssm_resource
    assert len(api) == 2, api

    worker = without_logs(allowed["worker"])
    assert {action for action, _ in worker} == {"ssm:GetParameter"}
    assert len(worker) == 2, worker
    for name in ("OPENAI_API_KEY_PARAMETER", "SLACK_BOT_TOKEN_PARAMETER"):
        parameter = stage_variable(PACKAGE_STAGE, name)
        assert any(is_parameter_arn(resource, parameter) for _, resource in worker), (parameter, worker)


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
    """`make deploy STAGE=dev` as a user runs it (in a project copy, against moto): chalice
    package builds the zip, bytecode is added to it, chalice deploy reuses that zip, and the
    worker's async retries are turned off."""
    moto_server.reset()
    work = tmp_path_factory.mktemp("make-deploy")
    project = copy_project(work, deployments_cache)
    shutil.copy2(ROOT / "Makefile", project)
    shutil.copy2(ROOT / "requirements-dev.txt", project)
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)  # installed, stamp newer
    env = subprocess_env(moto_server.url, work)
    try:
        result = run_ok(["make", "deploy", "STAGE=dev"], project, env)
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
