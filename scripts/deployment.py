"""Deployment helpers that Chalice's config cannot express. Not deployed (outside chalicelib).

    python scripts/deployment.py preflight STAGE          # before `make deploy` does anything
    python scripts/deployment.py merge-template STAGE     # JSON for `chalice package --merge-template`
    python scripts/deployment.py deployment-zip STAGE BUILT_ZIP   # the zip `chalice deploy` will ship
    python scripts/deployment.py configure-worker STAGE   # after `chalice deploy`: async policy, cap

Contract:

- ``merge-template`` and ``configure-worker`` set the same policy for the worker's asynchronous
  invocations: no retries (a retry would answer the user twice) and a short event age (an
  answer much later is no answer).
- The worker's concurrency cap is opt-in, from ``WORKER_MAX_CONCURRENCY`` in the environment
  (``make deploy STAGE=prod WORKER_MAX_CONCURRENCY=10`` puts it there): a whole number of at
  least 1, or unset/empty for no cap. Lambda refuses a reservation that would leave the
  account fewer unreserved executions than its minimum, and new accounts often have only
  10 to 50 in all, so it is never set unasked. ``configure-worker`` sets it with
  ``PutFunctionConcurrency`` (``chalice deploy`` has just removed any earlier one); a refusal
  is one line saying what to do, exit 1, with the async policy already stored.
  ``merge-template`` declares a ``WorkerMaxConcurrency`` CloudFormation parameter (default:
  the variable's value, else empty, which means no cap) and a condition, so that the worker
  gets ``ReservedConcurrentExecutions`` only when the parameter is set.
- ``preflight`` checks, without calling AWS, that the stage exists, that boto3 finds AWS
  credentials and a region, and that ``WORKER_MAX_CONCURRENCY`` is usable; each failure is
  one line and exit 1, before anything is built or deployed.
- ``deployment-zip`` prints the path of the zip in ``.chalice/deployments`` that
  ``chalice deploy --stage STAGE`` will reuse, named by Chalice's own function (a hash of
  requirements.txt, app.py, chalicelib and Chalice's runtime files, then the Python version),
  and checks that it holds the same bytes as BUILT_ZIP (the ``deployment.zip`` that
  ``chalice package`` just copied out of it). A zip that is missing or different means the
  project changed between the two commands: exit 1, so that bytecode never goes to a zip
  that will not ship. The newest zip is not necessarily that one: a rollback to earlier
  inputs reuses an older zip.

Errors are one line on stderr (``error: ...``), never a traceback.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The hash that names Chalice's cached zip covers every file under chalicelib, __pycache__
# included: writing bytecode there between `chalice package` and `chalice deploy` would make
# deploy build a new zip (without our bytecode).
sys.dont_write_bytecode = True

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for chalicelib, when run as `python scripts/deployment.py`
sys.path.insert(0, str(ROOT / "scripts"))  # for check_aws, also when a test imports this file by path

import check_aws  # noqa: E402

from chalicelib.dispatch import WORKER  # noqa: E402  (the @app.lambda_function name)

API_LOGICAL_ID = "APIHandler"
API_ROLE_LOGICAL_ID = "ApiHandlerRole"
WORKER_LOGICAL_ID = "Worker"
MAXIMUM_RETRY_ATTEMPTS = 0
MAXIMUM_EVENT_AGE_SECONDS = 600
MAX_CONCURRENCY_VARIABLE = "WORKER_MAX_CONCURRENCY"
MAX_CONCURRENCY_PARAMETER = "WorkerMaxConcurrency"
MAX_CONCURRENCY_CONDITION = "WorkerConcurrencyCapped"
NO_VALUE = {"Ref": "AWS::NoValue"}  # CloudFormation: leave the property out
WHOLE_NUMBER = re.compile(r"[1-9][0-9]*")
REFUSAL_ADVICE = (
    f"lower {MAX_CONCURRENCY_VARIABLE}, ask AWS for a higher Lambda concurrent executions quota "
    "(Service Quotas), or leave it unset for no cap"
)


class DeployError(Exception):
    """Something stops this step; ``str(error)`` is the one line to show."""


def load_config() -> dict[str, Any]:
    return json.loads((ROOT / ".chalice" / "config.json").read_text())


def stage_config(stage: str) -> dict[str, Any]:
    stages = load_config()["stages"]
    if stage not in stages:
        raise DeployError(f"stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})")
    return stages[stage]


def worker_max_concurrency(environ: Mapping[str, str]) -> int | None:
    """The opt-in cap on the worker's concurrent executions; None when unset or empty."""
    raw = environ.get(MAX_CONCURRENCY_VARIABLE, "").strip()
    if not raw:
        return None
    if not WHOLE_NUMBER.fullmatch(raw):
        raise DeployError(
            f"{MAX_CONCURRENCY_VARIABLE} must be a whole number of at least 1, or unset for no cap; got {raw!r}"
        )
    return int(raw)


def policy(stage: str, function: str) -> dict[str, Any]:
    name = stage_config(stage)["lambda_functions"][function]["iam_policy_file"]
    return json.loads((ROOT / ".chalice" / name).read_text())


def deployed_worker_name(stage: str) -> str:
    """The name `chalice deploy` gives the worker: {app_name}-{stage}-{function name}."""
    return f"{load_config()['app_name']}-{stage}-{WORKER}"


def merge_template(stage: str, max_concurrency: int | None = None) -> dict[str, Any]:
    """Point the HTTP function at the worker CloudFormation names, configure async invokes, and
    offer the worker's concurrency cap as a parameter (``max_concurrency`` is its default).

    A list in a merge template replaces the original, so the role's whole policy is restated,
    with the invoke permission narrowed to the worker's real ARN. The worker's role is left as
    `chalice package` writes it, from its policy file word for word: its grants (the OpenAI key
    and the Slack bot token parameters, and logs) name nothing that only CloudFormation knows.
    """
    document = policy(stage, "api_handler")
    invoke = [s for s in document["Statement"] if s["Action"] in ("lambda:InvokeFunction", ["lambda:InvokeFunction"])]
    if len(invoke) != 1:
        raise DeployError("the api_handler policy needs one statement whose only action is lambda:InvokeFunction")
    invoke[0]["Resource"] = {"Fn::GetAtt": [WORKER_LOGICAL_ID, "Arn"]}
    return {
        "Parameters": {
            MAX_CONCURRENCY_PARAMETER: {
                "Type": "String",
                # A String, because a Number parameter cannot default to "not given".
                "Default": "" if max_concurrency is None else str(max_concurrency),
                "AllowedPattern": f"^({WHOLE_NUMBER.pattern})?$",
                "ConstraintDescription": "a whole number of at least 1, or empty for no cap",
                "Description": "Reserved concurrency of the worker (a cap on its concurrent runs); empty: none. "
                "Lambda refuses one that leaves the account fewer unreserved executions than its minimum.",
            }
        },
        "Conditions": {
            MAX_CONCURRENCY_CONDITION: {"Fn::Not": [{"Fn::Equals": [{"Ref": MAX_CONCURRENCY_PARAMETER}, ""]}]}
        },
        "Resources": {
            WORKER_LOGICAL_ID: {
                "Properties": {
                    "ReservedConcurrentExecutions": {
                        "Fn::If": [MAX_CONCURRENCY_CONDITION, {"Ref": MAX_CONCURRENCY_PARAMETER}, NO_VALUE]
                    }
                }
            },
            API_LOGICAL_ID: {
                "Properties": {"Environment": {"Variables": {"WORKER_FUNCTION_NAME": {"Ref": WORKER_LOGICAL_ID}}}}
            },
            API_ROLE_LOGICAL_ID: {
                "Properties": {"Policies": [{"PolicyName": "ApiHandlerRolePolicy", "PolicyDocument": document}]}
            },
            "WorkerEventInvokeConfig": {
                "Type": "AWS::Lambda::EventInvokeConfig",
                "Properties": {
                    "FunctionName": {"Ref": WORKER_LOGICAL_ID},
                    "Qualifier": "$LATEST",
                    "MaximumRetryAttempts": MAXIMUM_RETRY_ATTEMPTS,
                    "MaximumEventAgeInSeconds": MAXIMUM_EVENT_AGE_SECONDS,
                },
            },
        },
    }


def configure_worker(lambda_client: Any, function_name: str) -> dict[str, Any]:
    """Set the worker's async-invoke policy on a deployed function; returns what Lambda stored."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return lambda_client.put_function_event_invoke_config(
            FunctionName=function_name,
            MaximumRetryAttempts=MAXIMUM_RETRY_ATTEMPTS,
            MaximumEventAgeInSeconds=MAXIMUM_EVENT_AGE_SECONDS,
        )
    except (BotoCoreError, ClientError) as error:
        raise DeployError(
            f"could not turn off async retries for {function_name} ({aws_error(error)}); "
            "until this step succeeds, a failed answer may be retried and reach the user twice"
        ) from None


def aws_error(error: Exception) -> str:
    """``Code: message`` of an AWS error, on one line."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {' '.join(str(details.get('Message', '')).split())}"
    return " ".join(str(error).split()) or type(error).__name__


def cap_worker(lambda_client: Any, function_name: str, max_concurrency: int) -> int:
    """Reserve ``max_concurrency`` executions for the worker (which also caps it); returns what Lambda stored.

    Raises ``DeployError`` with one line on a refusal, which says what to do.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = lambda_client.put_function_concurrency(
            FunctionName=function_name, ReservedConcurrentExecutions=max_concurrency
        )
    except (BotoCoreError, ClientError) as error:
        reason = aws_error(error)
        if reason.startswith("InvalidParameterValueException:") and "UnreservedConcurrentExecution" in reason:
            raise DeployError(
                f"Lambda refused {MAX_CONCURRENCY_VARIABLE}={max_concurrency} for {function_name}: the account "
                f"would keep fewer unreserved executions than its minimum ({reason.rstrip('.')}). "
                f"The worker is deployed without a cap; {REFUSAL_ADVICE}."
            ) from None
        raise DeployError(
            f"could not set {MAX_CONCURRENCY_VARIABLE}={max_concurrency} for {function_name} ({reason}); "
            "the worker is deployed without a cap"
        ) from None
    return int(response["ReservedConcurrentExecutions"])


def deployment_zip(stage: str, built: Path) -> Path:
    """The zip `chalice deploy --stage STAGE` will reuse: Chalice's own name for it, checked against ``built``."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.packager import LambdaDeploymentPackager
    from chalice.utils import UI, OSUtils

    stage_config(stage)
    config = CLIFactory(project_dir=str(ROOT)).create_config_obj(chalice_stage_name=stage)
    if config.automatic_layer:
        # Then the app and its dependencies ship as two zips, named differently.
        raise DeployError("automatic_layer is on: the bytecode step does not know Chalice's layer zips")
    # As chalice.deploy.deployer.create_build_stage makes it; naming the zip needs no dependency builder.
    packager = LambdaDeploymentPackager(
        osutils=OSUtils(), dependency_builder=None, ui=UI(), architecture=config.lambda_architecture
    )
    path = Path(packager.deployment_package_filename(config.project_dir, config.lambda_python_version))
    if not built.is_file():
        raise DeployError(f"{built} does not exist: run `chalice package` first")
    if not path.is_file() or not filecmp.cmp(path, built, shallow=False):
        raise DeployError(
            f"chalice deploy would build {path.name}, not the zip chalice package made: the project changed "
            "in between (app.py, chalicelib or requirements.txt); run make deploy again"
        )
    return path


def preflight(stage: str, environ: Mapping[str, str]) -> None:
    """Everything `make deploy` can check before it builds anything, without calling AWS."""
    stage_config(stage)
    worker_max_concurrency(environ)
    missing = check_aws.problem()
    if missing:
        raise DeployError(f"cannot use AWS: {missing}")


def main(argv: list[str]) -> int:
    commands = {"preflight": 1, "merge-template": 1, "deployment-zip": 2, "configure-worker": 1}
    if not argv or commands.get(argv[0]) != len(argv) - 1:
        print(__doc__.split("\n\nContract")[0], file=sys.stderr)
        return 2
    command, stage = argv[0], argv[1]
    try:
        return run(command, stage, argv[2:])
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def run(command: str, stage: str, rest: list[str]) -> int:
    if command == "preflight":
        preflight(stage, os.environ)
        return 0
    if command == "merge-template":
        json.dump(merge_template(stage, worker_max_concurrency(os.environ)), sys.stdout, indent=2)
        print()
        return 0
    if command == "deployment-zip":
        print(deployment_zip(stage, Path(rest[0])))
        return 0
    import boto3

    preflight(stage, os.environ)  # an unknown stage, a bad cap or no AWS: one line, not a traceback
    max_concurrency = worker_max_concurrency(os.environ)
    name = deployed_worker_name(stage)
    client = boto3.client("lambda")
    stored = configure_worker(client, name)
    print(
        f"configured {name}: MaximumRetryAttempts={stored['MaximumRetryAttempts']}, "
        f"MaximumEventAgeInSeconds={stored['MaximumEventAgeInSeconds']}"
    )
    if max_concurrency is None:
        print(f"{name}: no concurrency cap ({MAX_CONCURRENCY_VARIABLE} unset)")
    else:
        print(f"{name}: ReservedConcurrentExecutions={cap_worker(client, name, max_concurrency)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
