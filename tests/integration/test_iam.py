"""Least privilege: every AWS call each function makes is allowed by its own policy file, and
each policy allows nothing beyond those calls and writing logs.

The calls are recorded from botocore's ``before-parameter-build`` event while the real code runs
against moto: the HTTP function in Lambda mode (signing secret from SSM, an Event invoke of
the worker, a stop mark written in the stage's table) and the worker (whose stop poll reads
that table while an answer runs), once per kind of job, each the first job of a fresh container so
that it reads every secret it needs itself: a slash command (OpenAI key from SSM, a real answer
from the fake LLM), a DM (OpenAI key and Slack bot token from SSM, an answer streamed into the
fake Slack Web API), the same DM redelivered to another container (dropped), and an opened
assistant pane (bot token from SSM, its suggested prompts). The worker runs with its stage's
configured ``IDEMPOTENCY_TABLE``, created in moto by the deploy's own ``ensure-table`` code, and
a per-user limit, so each job's claim and each question's count are DynamoDB calls too.

A ``TransactWriteItems`` is recorded as the IAM actions AWS authorises it by: one per item
action (``Put`` is ``dynamodb:PutItem``, ``Update`` ``dynamodb:UpdateItem``...), on each item's
table; there is no ``dynamodb:TransactWriteItems`` permission to grant.
"""

from __future__ import annotations

import fnmatch
import io
import json
import time
import uuid
import zipfile
from typing import Any

import boto3
import pytest
from chalice.config import Config
from moto import mock_aws

from chalicelib import claims, gateway, jobs, limits, secrets, worker
from chalicelib.deadline import Deadline
from chalicelib.settings import Settings
from devkit import slack_requests
from devkit.fake_openai import StreamReply
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI
from devkit.http_fake import FakeServer
from devkit.slack_requests import JSON
from tests.conftest import ROOT, SIGNING_SECRET, import_script, new_container, response_path, signed_headers

ACCOUNT = "123456789012"  # moto's account
REGION = "us-east-1"
LOG_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
IAM_ACTION = {("lambda", "Invoke"): "lambda:InvokeFunction"}
# What each item action of a TransactWriteItems is authorised as (the DynamoDB developer guide,
# "Using IAM with DynamoDB transactions").
TRANSACT_WRITE_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
RESOURCE_PREFIXES = ("arn:aws:ssm:*:*:parameter/", "arn:aws:lambda:*:*:function:", "arn:aws:dynamodb:*:*:table/")
DEPLOYMENT = import_script("deployment")  # creates the table as make deploy does


def config_for(stage: str, function: str) -> Config:
    disk = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return Config(chalice_stage=stage, function_name=function, config_from_disk=disk)


def policy_for(stage: str, function: str) -> dict[str, Any]:
    name = config_for(stage, function).iam_policy_file
    return json.loads((ROOT / ".chalice" / name).read_text())


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    return any(
        statement["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in as_list(statement["Resource"]))
        for statement in policy["Statement"]
    )


class CallRecorder:
    """Records (IAM action, resource ARN) for every AWS API call the default boto3 session makes."""

    def __init__(self) -> None:
        self.calls: set[tuple[str, str]] = set()

    def __call__(self, model: Any, params: dict[str, Any], **kwargs: Any) -> None:
        service = model.service_model.service_name
        action = IAM_ACTION.get((service, model.name), f"{model.service_model.signing_name}:{model.name}")
        if service == "ssm":
            resource = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{params['Name']}"
        elif service == "lambda":
            resource = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{params['FunctionName']}"
        elif service == "dynamodb" and model.name == "TransactWriteItems":
            for item in params["TransactItems"]:
                [(kind, details)] = item.items()
                self.calls.add((TRANSACT_WRITE_ACTIONS[kind], table_arn(details["TableName"])))
            return
        elif service == "dynamodb":
            resource = table_arn(params["TableName"])
        else:
            resource = f"unexpected service {service}"
        self.calls.add((action, resource))

    def take(self) -> set[tuple[str, str]]:
        """The calls recorded so far, and a fresh start."""
        calls, self.calls = self.calls, set()
        return calls


@pytest.fixture
def aws_calls():
    """moto for AWS, with every call recorded. Setup calls made before ``recording`` are not counted."""
    with mock_aws(config={"lambda": {"use_docker": False}}):
        boto3.setup_default_session(region_name=REGION)
        recorder = CallRecorder()
        yield recorder
        boto3.DEFAULT_SESSION = None


def start_recording(recorder: CallRecorder) -> None:
    boto3.DEFAULT_SESSION.events.register("before-parameter-build", recorder)


def create_worker_function(name: str) -> None:
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="worker-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def worker(event, context):\n    return None\n")
    boto3.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="app.worker", Code={"ZipFile": code.getvalue()}
    )


def table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def assert_least_privilege(policy: dict[str, Any], calls: set[tuple[str, str]]) -> None:
    assert calls, "the scenario made no AWS call: nothing was checked"
    for action, resource in calls:
        assert allows(policy, action, resource), f"{action} on {resource} is not allowed"
    for statement in policy["Statement"]:
        actions = set(as_list(statement["Action"]))
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in actions), statement
        if actions <= LOG_ACTIONS:
            assert actions == LOG_ACTIONS
            continue
        # Every action of every statement, on every resource it names, is something the code does.
        for action in actions:
            for pattern in as_list(statement["Resource"]):
                used = {(a, r) for a, r in calls if a == action and fnmatch.fnmatchcase(r, pattern)}
                assert used, f"statement {statement.get('Sid')} allows {action} on {pattern}, which the code never does"
        # Wildcards stand only for region and account: nothing beyond what was called matches.
        for pattern in as_list(statement["Resource"]):
            assert pattern.startswith(RESOURCE_PREFIXES), pattern
            assert "*" not in pattern.split(":", 5)[5], pattern


def create_claims_table(stage: str) -> str:
    """The worker's configured table, created in moto by the code `make deploy` runs; its name."""
    name = config_for(stage, "worker").environment_variables["IDEMPOTENCY_TABLE"]
    assert DEPLOYMENT.ensure_table(boto3.client("dynamodb"), name).startswith(f"created table {name}")
    return name


def table_items(name: str) -> set[str]:
    """The keys of every item in table ``name``, read by a client whose calls are not recorded."""
    client = boto3.Session(region_name=REGION).client("dynamodb")
    return {item["pk"]["S"] for item in client.scan(TableName=name)["Items"]}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_http_function(stage: str, aws_calls: CallRecorder, slack_server: FakeServer) -> None:
    config = config_for(stage, "api_handler")
    # The fake response_url is on loopback: in Lambda that host must be listed.
    env = {
        **config.environment_variables,
        "AWS_LAMBDA_FUNCTION_NAME": f"mameka-{stage}",
        "RESPONSE_URL_HOSTS": "127.0.0.1",
    }
    boto3.client("ssm").put_parameter(
        Name=env["SLACK_SIGNING_SECRET_PARAMETER"], Value=SIGNING_SECRET, Type="SecureString"
    )
    create_worker_function(env["WORKER_FUNCTION_NAME"])
    table = create_claims_table(stage)
    assert env["IDEMPOTENCY_TABLE"] == table  # the HTTP function is told the worker's table
    start_recording(aws_calls)
    calls: dict[str, set[tuple[str, str]]] = {}

    body = slack_requests.command_form("hi", slack_server.url + response_path())
    headers = {k.lower(): v for k, v in signed_headers(body).items()}
    status, message = gateway.handle_slash_command(headers, body, env, "req-1")
    assert status == 200 and "Thinking" in message["text"]
    calls["slash command"] = aws_calls.take()

    new_container()  # the events route as a fresh container's first request
    body = slack_requests.mention_event("hi")
    headers = {k.lower(): v for k, v in signed_headers(body, content_type=JSON).items()}
    status, message = gateway.handle_event(headers, body, env, "req-2")
    assert status == 200, message
    calls["mention"] = aws_calls.take()

    new_container()
    body = slack_requests.agent_session_stopped_event(slack_requests.new_ts())
    headers = {k.lower(): v for k, v in signed_headers(body, content_type=JSON).items()}
    status, message = gateway.handle_event(headers, body, env, "req-3")
    assert status == 200, message
    calls["stop"] = aws_calls.take()
    assert any(key.startswith("stop#") for key in table_items(table))

    read_secret = ("ssm:GetParameter", parameter_arn(f"/mameka/{stage}/slack-signing-secret"))
    expected = {
        read_secret,
        ("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:mameka-{stage}-worker"),
    }
    mark_stop = ("dynamodb:PutItem", table_arn(table))
    assert calls == {"slash command": expected, "mention": expected, "stop": {read_secret, mark_stop}}
    assert_least_privilege(policy_for(stage, "api_handler"), expected | {mark_stop})


def parameter_arn(name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"


def job_id() -> str:
    return f"Ev{uuid.uuid4().hex[:10].upper()}"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_worker(stage: str, aws_calls: CallRecorder, openai_server: FakeServer, slack_server: FakeServer) -> None:
    config = config_for(stage, "worker")
    with FakeSlackAPI() as slack_api:
        env = {
            **config.environment_variables,
            "AWS_LAMBDA_FUNCTION_NAME": f"mameka-{stage}-worker",
            "RESPONSE_URL_HOSTS": "127.0.0.1",  # the fake response_url is on loopback
            "OPENAI_BASE_URL": openai_server.url + "/v1",
            "SLACK_API_URL": slack_api.url,
            "USER_RATE_LIMIT_PER_MINUTE": "100",  # on, so that each question is counted
        }
        openai_key, bot_token = env["OPENAI_API_KEY_PARAMETER"], env["SLACK_BOT_TOKEN_PARAMETER"]
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=openai_key, Value="sk-fake", Type="SecureString")
        # The fake Slack API refuses any other token: each Slack call below proves the SSM value was used.
        ssm.put_parameter(Name=bot_token, Value=FAKE_BOT_TOKEN, Type="SecureString")
        table = create_claims_table(stage)
        assert env["IDEMPOTENCY_TABLE"] == table == f"mameka-{stage}-claims"
        start_recording(aws_calls)
        calls: dict[str, set[tuple[str, str]]] = {}

        path = response_path()
        command = jobs.SlashCommandJob(
            id=str(uuid.uuid4()),
            asked_at=time.time(),
            text="hi",
            response_url=slack_server.url + path,
            user_id="U1",
            channel_id="C1",
            team_id="T1",
        )
        worker.run(command.to_payload(), Deadline.in_seconds(60), env)
        assert slack_server.requests_to(path)[0].json()["text"].endswith("*Answer* to: hi")
        calls["slash command"] = aws_calls.take()

        new_container()
        channel = "D0001"
        ts = slack_api.add_message(channel, "hi", user="U1")
        openai_server.script.append(StreamReply(deltas=["Hello", " from ", "the worker"]))
        message = jobs.MessageJob(
            id=job_id(),
            asked_at=time.time(),
            team_id="T1",
            channel_id=channel,
            user_id="U1",
            text="hi",
            ts=ts,
            thread_ts=None,
            bot_user_id=slack_api.bot_user_id,
        )
        worker.run(message.to_payload(), Deadline.in_seconds(60), env)
        assert "Hello from the worker" in "".join(slack_api.visible_text(channel, ts))
        calls["message"] = aws_calls.take()

        new_container()  # Slack's redelivery, in another container: its claim is refused
        asked = len(openai_server.requests_to("/v1/chat/completions"))
        worker.run(message.to_payload(), Deadline.in_seconds(60), env)
        assert len(openai_server.requests_to("/v1/chat/completions")) == asked
        calls["message again"] = aws_calls.take()

        new_container()
        pane = jobs.AssistantThreadStartedJob(
            id=job_id(),
            asked_at=time.time(),
            team_id="T1",
            channel_id="D0002",
            thread_ts="1700000000.000100",
            user_id="U1",
        )
        worker.run(pane.to_payload(), Deadline.in_seconds(60), env)
        assert slack_api.calls_to("assistant.threads.setSuggestedPrompts"), "the prompts were not set"
        calls["assistant pane"] = aws_calls.take()

    read_key = ("ssm:GetParameter", parameter_arn(f"/mameka/{stage}/openai-api-key"))
    read_token = ("ssm:GetParameter", parameter_arn(f"/mameka/{stage}/slack-bot-token"))
    claim = ("dynamodb:PutItem", table_arn(table))  # in a TransactWriteItems
    count = ("dynamodb:UpdateItem", table_arn(table))
    poll_stop = ("dynamodb:GetItem", table_arn(table))  # while the thread's answer runs
    assert calls == {
        "slash command": {claim, count, read_key},  # its reply goes to response_url: no Slack token needed
        "message": {claim, count, read_key, read_token, poll_stop},
        "message again": {claim},  # dropped before anything else
        "assistant pane": {claim, read_token},  # no question: nothing counted
    }
    items = table_items(table)
    assert {f"claim#{job.id}" for job in (command, message, pane)} | {f"claim#{channel}:{ts}"} <= items
    assert sum(key.startswith("rate#T1#U1#") for key in items) >= 1
    assert_least_privilege(policy_for(stage, "worker"), set().union(*calls.values()))


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_worker_reads_the_bot_token_from_its_stage_parameter(stage: str, aws_calls: CallRecorder) -> None:
    """``secrets.slack_bot_token`` alone, with the worker's configured environment: one allowed read."""
    env = config_for(stage, "worker").environment_variables
    boto3.client("ssm").put_parameter(Name=env["SLACK_BOT_TOKEN_PARAMETER"], Value=FAKE_BOT_TOKEN, Type="SecureString")
    start_recording(aws_calls)

    assert secrets.slack_bot_token(Settings.from_env(env)) == FAKE_BOT_TOKEN

    assert aws_calls.calls == {("ssm:GetParameter", parameter_arn(f"/mameka/{stage}/slack-bot-token"))}
    policy = policy_for(stage, "worker")
    assert all(allows(policy, action, resource) for action, resource in aws_calls.calls)
    # The HTTP function never needs it, and may not read it.
    assert not any(allows(policy_for(stage, "api_handler"), a, r) for a, r in aws_calls.calls)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_claims_and_counts_use_only_the_workers_stage_table(stage: str, aws_calls: CallRecorder) -> None:
    """``claims`` and ``limits`` alone, with the worker's configured environment in Lambda: a claim
    (two keys in one transaction), the same claim refused, and a counted question are the
    allowed item writes on the stage's own table; the other stage's table is not allowed, and the
    HTTP function may not count questions there (it may only put stop marks: ``test_http_function``)."""
    env = {
        **config_for(stage, "worker").environment_variables,
        "AWS_LAMBDA_FUNCTION_NAME": f"mameka-{stage}-worker",
        "USER_RATE_LIMIT_PER_MINUTE": "1",
    }
    table = create_claims_table(stage)
    settings = Settings.from_env(env)
    start_recording(aws_calls)

    store = claims.store(settings)
    assert isinstance(store, claims.DynamoClaims)
    assert store.claim([job_id(), "C1:1700000000.000100"]) is True
    assert claims.DynamoClaims(table).claim(["C1:1700000000.000100"]) is False  # another container
    assert limits.check(settings, "T1", "U1", now=1_700_000_040.0) is None
    assert limits.check(settings, "T1", "U1", now=1_700_000_041.0) == 59  # the limit is 1

    expected = {("dynamodb:PutItem", table_arn(table)), ("dynamodb:UpdateItem", table_arn(table))}
    assert aws_calls.calls == expected
    policy = policy_for(stage, "worker")
    assert all(allows(policy, action, resource) for action, resource in expected)
    other = table_arn(f"mameka-{'prod' if stage == 'dev' else 'dev'}-claims")
    assert not any(allows(policy, action, other) for action, _ in expected)
    api_policy = policy_for(stage, "api_handler")
    assert not allows(api_policy, "dynamodb:UpdateItem", table_arn(table))
    assert not any(allows(api_policy, action, other) for action, _ in expected)


def test_each_function_has_its_own_hand_written_policy() -> None:
    for stage in ("dev", "prod"):
        for function in ("api_handler", "worker"):
            config = config_for(stage, function)
            assert config.autogen_policy is False
            assert config.iam_policy_file == f"policy-{stage}-{function}.json"
