"""Deployment helpers that Chalice's config cannot express. Not deployed (outside chalicelib).

    python scripts/deployment.py merge-template STAGE     # JSON for `chalice package --merge-template`
    python scripts/deployment.py configure-worker STAGE   # after `chalice deploy`: no async retries

Both set the same policy for the worker's asynchronous invocations: no retries (a retry
would answer the user twice) and a short event age (an answer much later is no answer).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for chalicelib, when run as `python scripts/deployment.py`

from chalicelib.dispatch import WORKER  # noqa: E402  (the @app.lambda_function name)

API_LOGICAL_ID = "APIHandler"
API_ROLE_LOGICAL_ID = "ApiHandlerRole"
WORKER_LOGICAL_ID = "Worker"
MAXIMUM_RETRY_ATTEMPTS = 0
MAXIMUM_EVENT_AGE_SECONDS = 600


def load_config() -> dict[str, Any]:
    return json.loads((ROOT / ".chalice" / "config.json").read_text())


def stage_config(stage: str) -> dict[str, Any]:
    stages = load_config()["stages"]
    if stage not in stages:
        raise SystemExit(f"error: stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})")
    return stages[stage]


def policy(stage: str, function: str) -> dict[str, Any]:
    name = stage_config(stage)["lambda_functions"][function]["iam_policy_file"]
    return json.loads((ROOT / ".chalice" / name).read_text())


def deployed_worker_name(stage: str) -> str:
    """The name `chalice deploy` gives the worker: {app_name}-{stage}-{function name}."""
    return f"{load_config()['app_name']}-{stage}-{WORKER}"


def merge_template(stage: str) -> dict[str, Any]:
    """Point the HTTP function at the worker CloudFormation names, and configure async invokes.

    A list in a merge template replaces the original, so the role's whole policy is restated,
    with the invoke permission narrowed to the worker's real ARN. The worker's role is left as
    `chalice package` writes it, from its policy file word for word: its grants (the OpenAI key
    and the Slack bot token parameters, and logs) name nothing that only CloudFormation knows.
    """
    document = policy(stage, "api_handler")
    invoke = [s for s in document["Statement"] if s["Action"] in ("lambda:InvokeFunction", ["lambda:InvokeFunction"])]
    if len(invoke) != 1:
        raise SystemExit("error: the api_handler policy needs one statement whose only action is lambda:InvokeFunction")
    invoke[0]["Resource"] = {"Fn::GetAtt": [WORKER_LOGICAL_ID, "Arn"]}
    return {
        "Resources": {
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
        }
    }


def configure_worker(lambda_client: Any, function_name: str) -> dict[str, Any]:
    """Set the worker's async-invoke policy on a deployed function; returns what Lambda stored."""
    return lambda_client.put_function_event_invoke_config(
        FunctionName=function_name,
        MaximumRetryAttempts=MAXIMUM_RETRY_ATTEMPTS,
        MaximumEventAgeInSeconds=MAXIMUM_EVENT_AGE_SECONDS,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("merge-template", "configure-worker"):
        print(__doc__, file=sys.stderr)
        return 2
    command, stage = argv
    if command == "merge-template":
        json.dump(merge_template(stage), sys.stdout, indent=2)
        print()
        return 0
    import boto3

    stage_config(stage)  # a clear error for an unknown stage
    name = deployed_worker_name(stage)
    stored = configure_worker(boto3.client("lambda"), name)
    print(
        f"configured {name}: MaximumRetryAttempts={stored['MaximumRetryAttempts']}, "
        f"MaximumEventAgeInSeconds={stored['MaximumEventAgeInSeconds']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
