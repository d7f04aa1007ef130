"""Deployment helpers that Chalice's config cannot express. Not deployed (outside chalicelib).

    python scripts/deployment.py preflight STAGE          # before `make deploy` or `make delete` does anything
    python scripts/deployment.py ensure-table STAGE       # before `chalice deploy`: the claims table
    python scripts/deployment.py merge-template STAGE     # JSON for `chalice package --merge-template`
    python scripts/deployment.py deployment-zip STAGE BUILT_ZIP   # the zip `chalice deploy` will ship
    python scripts/deployment.py configure-worker STAGE   # after `chalice deploy`: async policy, cap
    python scripts/deployment.py delete-table STAGE [--yes]   # after `chalice delete`: offer to drop the table

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
  credentials and a region, that ``WORKER_MAX_CONCURRENCY`` and ``YES`` are usable, and that
  the configuration each function would be deployed with works: every setting in the
  environment Chalice gives it (the stage's and the function's ``environment_variables`` in
  ``.chalice/config.json``; the shell's environment is not deployed, so it is not read) is
  usable, and the time limits fit (the worker's ``lambda_timeout`` above
  ``ANSWER_TIMEOUT_SECONDS`` and at most 900, ``OPENAI_TIMEOUT_SECONDS`` not above
  ``ANSWER_TIMEOUT_SECONDS``), as ``scripts/check_local.py`` checks them for ``make run``.
  Each failure is one line (``error: ...``, never a secret) and exit 1, before anything is
  built, deployed or deleted.
- The claims table (job claims and per-user counts, one table per stage) is named by the
  worker's ``IDEMPOTENCY_TABLE`` in ``.chalice/config.json`` (``mameka-<stage>-claims``), which
  the HTTP function is given too (it writes stop marks there). Its schema: partition key
  ``pk`` (S), no sort key, on-demand billing, TTL on ``expires_at``. Chalice cannot create tables:
  ``ensure-table`` creates it when missing, waits (at most ``TABLE_ACTIVE_TIMEOUT_SECONDS``)
  until it is ACTIVE, turns its TTL on when it is off, and says what it found in one line
  (``created table NAME ...`` or ``table NAME exists``); run again it changes nothing. A table
  of that name with another key schema, TTL on another attribute, or being deleted is one line
  and exit 1: the worker could not use it.
- ``merge-template`` declares the table for CloudFormation instead (``ClaimsTable``, named by
  CloudFormation), hands both functions its name by ``Ref``, and restates both roles with their
  policy files' DynamoDB statements narrowed to the table's ``Fn::GetAtt`` ARN.
- ``delete-table`` (after ``chalice delete``, in ``make delete``) deletes the table when told
  to: ``--yes`` or ``YES=1`` deletes it, ``YES=0`` keeps it; without either it asks y/N on a
  terminal, and from a pipe or a script it keeps the table and says how to delete it. A table
  that does not exist is one line, exit 0.
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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

# The hash that names Chalice's cached zip covers every file under chalicelib, __pycache__
# included: writing bytecode there between `chalice package` and `chalice deploy` would make
# deploy build a new zip (without our bytecode).
sys.dont_write_bytecode = True

# For common (which puts the repository on sys.path for chalicelib), also when a test imports this file by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_aws  # noqa: E402
import check_local  # noqa: E402  (the settings and time limits, checked as for `make run`)
import common  # noqa: E402
from common import ROOT, function_environment, load_config, stage_config  # noqa: E402

from chalicelib.claims import KEY_ATTRIBUTE, TTL_ATTRIBUTE  # noqa: E402  (the schema the worker writes)
from chalicelib.dispatch import WORKER  # noqa: E402  (the @app.lambda_function name)

API_LOGICAL_ID = "APIHandler"
API_ROLE_LOGICAL_ID = "ApiHandlerRole"
WORKER_LOGICAL_ID = "Worker"
WORKER_ROLE_LOGICAL_ID = "WorkerRole"
TABLE_LOGICAL_ID = "ClaimsTable"
TABLE_VARIABLE = "IDEMPOTENCY_TABLE"
TABLE_KEY = KEY_ATTRIBUTE  # partition key (S); no sort key. TTL_ATTRIBUTE: epoch seconds (N)
# A new on-demand table is usually ACTIVE within seconds; CloudFormation and the console allow minutes.
TABLE_ACTIVE_TIMEOUT_SECONDS = 180.0
TABLE_POLL_SECONDS = 2.0
YES_VARIABLE = "YES"
YES_VALUES = ("1", "y", "yes", "true")
NO_VALUES = ("0", "n", "no", "false")
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


class DeployError(common.ScriptError):
    """Something stops this step; ``str(error)`` is the one line to show."""


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


def table_name(stage: str) -> str:
    """The stage's claims table: the worker's ``IDEMPOTENCY_TABLE``, as Chalice resolves the worker's variables."""
    stage_config(stage)
    name = str(function_environment(load_config(), stage, WORKER).get(TABLE_VARIABLE, "")).strip()
    if not name:
        raise DeployError(
            f"stage {stage!r} gives the worker no {TABLE_VARIABLE} in .chalice/config.json "
            f"(stages.{stage}.lambda_functions.{WORKER}.environment_variables)"
        )
    return name


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def table_statement(document: dict[str, Any], name: str, function: str = WORKER) -> dict[str, Any]:
    """The one statement of a policy document that grants DynamoDB actions, checked to name table ``name``."""
    statements = [s for s in document["Statement"] if any(str(a).startswith("dynamodb:") for a in as_list(s["Action"]))]
    if len(statements) != 1 or not all(str(a).startswith("dynamodb:") for a in as_list(statements[0]["Action"])):
        raise DeployError(f"the {function} policy needs one statement whose actions are all DynamoDB ones")
    resources = as_list(statements[0]["Resource"])
    if len(resources) != 1 or not str(resources[0]).endswith(f":table/{name}"):
        raise DeployError(f"the {function} policy's DynamoDB statement must name table {name} and nothing else")
    return statements[0]


def deployed_worker_name(stage: str) -> str:
    """The name `chalice deploy` gives the worker: {app_name}-{stage}-{function name}."""
    return f"{load_config()['app_name']}-{stage}-{WORKER}"


def merge_template(stage: str, max_concurrency: int | None = None) -> dict[str, Any]:
    """Point the HTTP function at the worker CloudFormation names, configure async invokes, and
    offer the worker's concurrency cap as a parameter (``max_concurrency`` is its default).

    Also declare the claims table (``ClaimsTable``), give both functions its name by ``Ref`` (the
    merge sets that one variable over the stage's), and restate both roles.

    A list in a merge template replaces the original, so each role's whole policy is restated
    from its policy file: the HTTP role's with the invoke permission narrowed to the worker's
    real ARN, and each role's DynamoDB statement narrowed to the table's real ARN
    (CloudFormation names the table, as it names the functions). Every other statement, in
    both, is the policy file's word for word.
    """
    document = policy(stage, "api_handler")
    invoke = [s for s in document["Statement"] if s["Action"] in ("lambda:InvokeFunction", ["lambda:InvokeFunction"])]
    if len(invoke) != 1:
        raise DeployError("the api_handler policy needs one statement whose only action is lambda:InvokeFunction")
    invoke[0]["Resource"] = {"Fn::GetAtt": [WORKER_LOGICAL_ID, "Arn"]}
    # The HTTP function writes stop marks in the same table (chalicelib.stops).
    table_statement(document, table_name(stage), "api_handler")["Resource"] = {"Fn::GetAtt": [TABLE_LOGICAL_ID, "Arn"]}
    worker_document = policy(stage, WORKER)
    table_statement(worker_document, table_name(stage))["Resource"] = {"Fn::GetAtt": [TABLE_LOGICAL_ID, "Arn"]}
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
                    },
                    "Environment": {"Variables": {TABLE_VARIABLE: {"Ref": TABLE_LOGICAL_ID}}},
                }
            },
            WORKER_ROLE_LOGICAL_ID: {
                "Properties": {"Policies": [{"PolicyName": "WorkerRolePolicy", "PolicyDocument": worker_document}]}
            },
            TABLE_LOGICAL_ID: claims_table_resource(),
            API_LOGICAL_ID: {
                "Properties": {
                    "Environment": {
                        "Variables": {
                            "WORKER_FUNCTION_NAME": {"Ref": WORKER_LOGICAL_ID},
                            TABLE_VARIABLE: {"Ref": TABLE_LOGICAL_ID},
                        }
                    }
                }
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


def claims_table_resource() -> dict[str, Any]:
    """The claims table for CloudFormation: the schema ``ensure-table`` creates, named by CloudFormation."""
    return {
        "Type": "AWS::DynamoDB::Table",
        # Claims live 15 minutes and counts 2: nothing in the table outlives the stack that uses it.
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": TABLE_KEY, "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": TABLE_KEY, "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        },
    }


def error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def describe_table(client: Any, name: str) -> dict[str, Any] | None:
    """DescribeTable's ``Table``, or None when there is no such table."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return client.describe_table(TableName=name)["Table"]
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise DeployError(f"could not look up table {name} ({aws_error(error)})") from None
    except BotoCoreError as error:
        raise DeployError(f"could not look up table {name} ({aws_error(error)})") from None


def ensure_table(
    client: Any,
    name: str,
    timeout: float = TABLE_ACTIVE_TIMEOUT_SECONDS,
    poll: float = TABLE_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Create the claims table if it is missing, wait until it is ACTIVE, turn its TTL on; the line to show."""
    from botocore.exceptions import BotoCoreError, ClientError

    table = describe_table(client, name)
    created = False
    if table is None:
        try:
            client.create_table(
                TableName=name,
                AttributeDefinitions=[{"AttributeName": TABLE_KEY, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": TABLE_KEY, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
            created = True
        except ClientError as error:
            # ResourceInUseException: another deploy created it a moment ago; check it like any other.
            if error_code(error) != "ResourceInUseException":
                raise DeployError(f"could not create table {name} ({aws_error(error)})") from None
        except BotoCoreError as error:
            raise DeployError(f"could not create table {name} ({aws_error(error)})") from None
        table = describe_table(client, name)
        if table is None:
            raise DeployError(f"table {name} was created but cannot be found; run make deploy again")
    check_schema(table, name)
    wait_until_active(client, name, table["TableStatus"], timeout, poll, sleep)
    ttl_turned_on = ensure_ttl(client, name)
    if created:
        return f"created table {name} (on-demand, TTL on {TTL_ATTRIBUTE})"
    return f"table {name} exists" + (f"; turned on its TTL on {TTL_ATTRIBUTE}" if ttl_turned_on else "")


def check_schema(table: dict[str, Any], name: str) -> None:
    keys = [(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])]
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    if keys != [(TABLE_KEY, "HASH")] or types.get(TABLE_KEY) != "S":
        found = ", ".join(f"{attribute} {kind} ({types.get(attribute, '?')})" for attribute, kind in keys)
        raise DeployError(
            f"table {name} exists with key schema {found}; the bot needs partition key {TABLE_KEY} (S) and "
            f"no sort key: delete that table or name another in {TABLE_VARIABLE}"
        )


def wait_until_active(
    client: Any, name: str, status: str, timeout: float, poll: float, sleep: Callable[[float], None]
) -> None:
    """Poll DescribeTable until the table is ACTIVE; at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while status != "ACTIVE":
        if status == "DELETING":
            raise DeployError(f"table {name} is being deleted; run make deploy again once it is gone")
        if status not in ("CREATING", "UPDATING"):
            raise DeployError(f"table {name} is {status}, not ACTIVE: the worker could not use it")
        if time.monotonic() >= deadline:
            raise DeployError(f"table {name} is still {status} after {timeout:.0f} s; run make deploy again later")
        sleep(poll)
        table = describe_table(client, name)
        if table is None:
            raise DeployError(f"table {name} disappeared while it was {status}; run make deploy again")
        status = table["TableStatus"]


def ensure_ttl(client: Any, name: str) -> bool:
    """Turn TTL on for ``expires_at`` unless it is on already; True when this call turned it on."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
        if status in ("ENABLED", "ENABLING"):
            if attribute == TTL_ATTRIBUTE:
                return False
            raise DeployError(
                f"table {name} expires items by {attribute!r}, not {TTL_ATTRIBUTE!r}: turn its TTL off "
                "(a table has one TTL attribute) and run make deploy again"
            )
        if status == "DISABLING":
            raise DeployError(
                f"the TTL of table {name} is being turned off, and DynamoDB turns it on again only after "
                "that is done (up to an hour): run make deploy again later"
            )
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
        return True
    except (BotoCoreError, ClientError) as error:
        raise DeployError(f"could not turn on the TTL of table {name} ({aws_error(error)})") from None


def delete_answer(environ: Mapping[str, str]) -> bool | None:
    """``YES``: True to delete the table, False to keep it, None to ask (unset or empty)."""
    raw = environ.get(YES_VARIABLE, "").strip()
    if not raw:
        return None
    if raw.lower() in YES_VALUES:
        return True
    if raw.lower() in NO_VALUES:
        return False
    raise DeployError(
        f"{YES_VARIABLE} must be 1 (delete the table too) or 0 (keep it), or unset to be asked; got {raw!r}"
    )


def table_decision(name: str, answer: bool | None, stdin: TextIO, stderr: TextIO) -> bool | None:
    """``answer`` when given; else asked y/N on a terminal (anything but y or yes is no); else None:
    there is nobody to ask."""
    if answer is not None:
        return answer
    if not stdin.isatty():
        return None
    stderr.write(f"Delete table {name} too (job claims and per-user counts, nothing else)? [y/N] ")
    stderr.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def delete_table(client: Any, name: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.delete_table(TableName=name)
    except (BotoCoreError, ClientError) as error:
        raise DeployError(f"could not delete table {name} ({aws_error(error)})") from None


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
    delete_answer(environ)
    problems = configuration_problems(stage)
    missing = check_aws.problem()
    if missing:
        problems.append(f"cannot use AWS: {missing}")
    if problems:
        # main() prints "error: " before the message: one such line per problem.
        raise DeployError("\nerror: ".join(problems))


def configuration_problems(stage: str) -> list[str]:
    """What would not work in the functions as deployed: each one's own environment (Chalice
    merges the stage's variables and the function's; nothing comes from this shell), every
    setting checked, and the time limits; one line per problem, each said once."""
    config = load_config()
    lambda_timeout = check_local.worker_lambda_timeout(stage, config)
    problems: list[str] = []
    for function in ("api_handler", WORKER):  # Chalice's name for the HTTP function, and app.py's worker
        deployed = function_environment(config, stage, function)
        # The time limits are the worker's own: its variables, against its lambda_timeout.
        findings = (
            check_local.configuration_errors(deployed, lambda_timeout)
            if function == WORKER
            else check_local.setting_errors(deployed)
        )
        for finding in findings:
            if finding.text not in problems:
                problems.append(finding.text)
    return problems


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    commands = {
        "preflight": 1,
        "ensure-table": 1,
        "merge-template": 1,
        "deployment-zip": 2,
        "configure-worker": 1,
        "delete-table": 1,
    }
    yes = argv[:1] == ["delete-table"] and argv[2:] == ["--yes"]
    if yes:
        argv = argv[:2]
    if not argv or commands.get(argv[0]) != len(argv) - 1:
        print(__doc__.split("\n\nContract")[0], file=sys.stderr)
        return 2
    command, stage = argv[0], argv[1]
    try:
        return run(command, stage, argv[2:] + (["--yes"] if yes else []), environ)
    except common.ScriptError as problem:  # DeployError, or a stage that is not in config.json
        return common.error(str(problem))


def run(command: str, stage: str, rest: list[str], environ: Mapping[str, str]) -> int:
    if command == "preflight":
        preflight(stage, environ)
        return 0
    if command == "merge-template":
        json.dump(merge_template(stage, worker_max_concurrency(environ)), sys.stdout, indent=2)
        print()
        return 0
    if command == "deployment-zip":
        print(deployment_zip(stage, Path(rest[0])))
        return 0
    import boto3

    preflight(stage, environ)  # an unknown stage, a bad cap or no AWS: one line, not a traceback
    if command == "ensure-table":
        print(ensure_table(boto3.client("dynamodb"), table_name(stage)))
        return 0
    if command == "delete-table":
        name = table_name(stage)
        client = boto3.client("dynamodb")
        if describe_table(client, name) is None:
            print(f"table {name} does not exist")
            return 0
        answer = True if rest == ["--yes"] else delete_answer(environ)
        decision = table_decision(name, answer, sys.stdin, sys.stderr)
        if decision:
            delete_table(client, name)
            print(f"deleted table {name}")
        elif decision is None:
            print(f"kept table {name}: to delete it too, run `make delete STAGE={stage} YES=1`")
        else:
            print(f"kept table {name}")
        return 0
    max_concurrency = worker_max_concurrency(environ)
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
