"""Fuzzing the HTTP function's two routes and the worker, with hypothesis.

Properties, each over generated input (deterministic: ``derandomize=True``, no example
database, no per-example deadline, so a busy machine changes nothing but the run time):

(a) any method, body, headers and content type, sent to ``/slack/commands``,
    ``/slack/events`` or ``/slack/interactions`` through ``chalice.test.Client``, gets an
    answer below 500; unsigned, nothing is dispatched;
(b) correctly signed forms and JSON (near-valid commands, event envelopes and feedback clicks with fields
    dropped or replaced by odd values, and raw junk) get an answer below 500 too, and nothing
    reaches the worker unless it is a valid job: every dispatch is an Event invoke (Lambda
    mode, to the fake Lambda endpoint) whose payload ``chalicelib.jobs.from_payload`` accepts
    and which carries what the request said (a command's text and an allowed
    ``response_url``; an event's ``event_id``);
(c) any payload given to ``chalicelib.worker.run`` (valid jobs, jobs with fields dropped or
    replaced, and anything JSON can carry) never raises, returns None, writes exactly one
    ``answer`` log line, never ends in the catch-all (``internal_error``: a failure no handler
    expected), ends within its deadline (2 s margin), and a valid slash command job gets
    exactly one reply at its ``response_url``.

What the fuzzers found is kept as regular tests at the end of this file, each of which
failed before its fix.

Nothing leaves 127.0.0.1: the LLM, Slack and Lambda are the loopback fakes, and the worker
may post only to loopback (``RESPONSE_URL_HOSTS=127.0.0.1``).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib import jobs, worker
from chalicelib.deadline import Deadline
from chalicelib.settings import DEFAULT_RESPONSE_URL_HOSTS, Settings
from chalicelib.slack import command, interactions
from devkit import slack_requests
from devkit.fake_lambda import fake_lambda
from devkit.fake_openai import fake_openai
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI
from devkit.http_fake import FakeServer, Received, Reply
from tests.conftest import OPENAI_KEY, ROOT, SIGNING_SECRET, examples, new_container

COMMANDS, EVENTS, INTERACTIONS = "/slack/commands", "/slack/events", "/slack/interactions"
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,  # derandomized runs replay nothing; a database would only write .hypothesis/
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- values ---------------------------------------------------------------------------------------------------------

NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "\ud83d",  # a lone surrogate: JSON may carry one, UTF-8 cannot
    "🙂" * 3,
    "東京でおすすめの散歩道は？",
    "&lt;@U1&gt; &amp;",
    "%",
    "%zz",
    "%ff%fe",
    "&",
    "=",
    "a=b&c",
    "\r\n\t",
    "x" * 5000,
    "9" * 400,
]
SPECIAL_NUMBERS = [0, -1, 2**63, 10**400, -(10**400), 1e308, -0.0, math.inf, -math.inf, math.nan, True, False]
IDS = [
    slack_requests.TEAM_ID,
    slack_requests.CHANNEL_ID,
    slack_requests.DM_CHANNEL_ID,
    slack_requests.USER_ID,
    slack_requests.BOT_USER_ID,
    "Ev0FUZZ",
    "1700000000.000100",
]
text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=30))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.sampled_from(SPECIAL_NUMBERS), text)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)
odd_values = st.one_of(st.sampled_from(IDS), json_values)


@dataclass(frozen=True)
class Delete:
    """A mutation that removes a field."""


DELETE = Delete()


def mutated(
    base: st.SearchStrategy[dict[str, Any]], paths: list[tuple[str, ...]], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` dicts with a few of ``paths`` deleted or set to one of ``values``."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        document = draw(base)
        for path in draw(st.lists(st.sampled_from(paths), max_size=4)):
            value = draw(st.one_of(st.just(DELETE), values))
            _apply(document, path, value)
        return document

    return build()


def _apply(document: Any, path: tuple[str, ...], value: Any) -> None:
    *parents, last = path
    for name in parents:
        document = document.get(name) if isinstance(document, dict) else None
        if isinstance(document, list):
            document = document[0] if document else None
    if not isinstance(document, dict):
        return
    if value is DELETE:
        document.pop(last, None)
    else:
        document[last] = value


# --- (a) anything, against both routes -----------------------------------------------------------------------------

CONTENT_TYPES = [
    slack_requests.FORM,
    slack_requests.JSON,
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/json, application/x-www-form-urlencoded",
    "",
]
HEADER_NAMES = [
    "Content-Type",
    "X-Slack-Request-Timestamp",
    "X-Slack-Signature",
    "x-slack-signature",
    "X-Slack-Retry-Num",
    "X-Slack-Retry-Reason",
    "Content-Length",
    "Host",
]
TIMESTAMP_VALUES = ["", "0", "-1", "١٧٠٠٠٠٠٠٠٠", " 1700000000", "+1700000000", "1_700_000_000", "1e9", "9" * 5000]
bodies = st.one_of(
    st.binary(max_size=600),
    text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.just(b"ssl_check=1"),
    st.just(b"token=x&ssl_check=1&text=hi"),
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    signed_at: int | None  # seconds from now, when the body is correctly signed


requests_of_any_kind = st.builds(
    Request,
    method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE"]),
    path=st.sampled_from([COMMANDS, EVENTS, INTERACTIONS]),
    body=bodies,
    headers=st.dictionaries(
        st.one_of(st.sampled_from(HEADER_NAMES), st.text(min_size=1, max_size=12)),
        st.one_of(st.sampled_from(CONTENT_TYPES + TIMESTAMP_VALUES), st.integers().map(str), text),
        max_size=5,
    ),
    signed_at=st.one_of(st.none(), st.none(), st.integers(-400, 400)),
)


# --- (b) signed near-valid forms and envelopes ----------------------------------------------------------------------

RESPONSE_URLS = [
    "https://hooks.slack.com/commands/T0001/1/x",
    "https://hooks.slack.com:443/commands/T0001/1/x",
    "https://HOOKS.SLACK.COM/commands/x",
    "http://127.0.0.1:9/x",
    "http://localhost/x",
    "https://evil.example/x",
    "http://10.0.0.1/x",
    "http://169.254.169.254/latest/meta-data/",
    "https://a..b/x",
    "https://hooks.slack.com\\@evil.example/",
    "https://evil.example#@hooks.slack.com/",
    "http://[::1/x",
    "https://hooks.slack.com:99999/x",
    "javascript:alert(1)",
    "ftp://hooks.slack.com/x",
    "",
]
form_fields = st.sampled_from(
    ["token", "team_id", "channel_id", "user_id", "command", "text", "response_url", "ssl_check", "trigger_id"]
)
form_values = st.one_of(st.sampled_from([*RESPONSE_URLS, *IDS, "1", "/mameka"]), text)
BASE_FORM = dict(parse_qsl(slack_requests.command_form("hi", RESPONSE_URLS[0]).decode()))


@st.composite
def forms(draw: st.DrawFn) -> bytes:
    """A slash command's body: near-valid (fields dropped, replaced, repeated) or raw."""
    fields: dict[str, str | None] = dict(BASE_FORM)
    fields.update(text=draw(text), response_url=draw(st.sampled_from(RESPONSE_URLS)))
    for name in draw(st.lists(form_fields, max_size=3)):
        fields[name] = draw(st.one_of(st.none(), form_values))  # None: left out
    pairs = [(name, value) for name, value in fields.items() if value is not None]
    pairs += draw(st.lists(st.tuples(form_fields, form_values), max_size=2))  # repeated names: the first counts
    if draw(st.booleans()):
        return urlencode(pairs, errors="surrogatepass").encode()
    # Not url-encoded: '&', '=', '%' and bytes as they come.
    return "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")


ENVELOPE_PATHS = [
    ("type",),
    ("event_id",),
    ("team_id",),
    ("event_time",),
    ("authorizations",),
    ("authorizations", "user_id"),
    ("challenge",),
    ("event",),
    ("event", "type"),
    ("event", "user"),
    ("event", "channel"),
    ("event", "ts"),
    ("event", "thread_ts"),
    ("event", "text"),
    ("event", "channel_type"),
    ("event", "bot_id"),
    ("event", "subtype"),
    ("event", "team"),
    ("event", "user_team"),
    ("event", "assistant_thread"),
    ("event", "assistant_thread", "user_id"),
    ("event", "assistant_thread", "channel_id"),
    ("event", "assistant_thread", "thread_ts"),
]
ENVELOPE_VALUES = st.one_of(
    odd_values,
    st.sampled_from(SPECIAL_NUMBERS),
    st.sampled_from(
        [
            "event_callback",
            "url_verification",
            "app_mention",
            "message",
            "assistant_thread_started",
            "im",
            "file_share",
            "message_changed",
            slack_requests.BOT_USER_ID,
        ]
    ),
)


def _envelope(body: bytes) -> dict[str, Any]:
    return json.loads(body)


base_envelopes = st.sampled_from(["mention", "dm", "pane", "opened", "verify", "bot", "edit"]).map(
    lambda name: _envelope(
        {
            "mention": lambda: slack_requests.mention_event("hi"),
            "dm": lambda: slack_requests.dm_event("hi"),
            "pane": lambda: slack_requests.assistant_message_event("hi"),
            "opened": lambda: slack_requests.assistant_thread_started_event(),
            "verify": lambda: slack_requests.url_verification("challenge-x"),
            "bot": lambda: slack_requests.dm_event("hi", bot_id="B1"),
            "edit": lambda: slack_requests.mention_event("hi", subtype="message_changed"),
        }[name]()
    )
)
envelopes = mutated(base_envelopes, ENVELOPE_PATHS, ENVELOPE_VALUES)
json_bodies = st.one_of(
    envelopes.map(lambda e: json.dumps(e).encode()),  # NaN and Infinity as JSON's non-standard tokens
    envelopes.map(lambda e: json.dumps(e, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.just(b"[" * 100_000),
    st.just(b'{"type": "event_callback", "event_time": 1' + b"0" * 5000 + b"}"),
)


INTERACTION_PATHS = [
    ("type",),
    ("actions",),
    ("actions", "type"),
    ("actions", "value"),
    ("message",),
    ("message", "ts"),
    ("channel",),
    ("channel", "id"),
    ("user",),
    ("user", "id"),
    ("user", "team_id"),
    ("team",),
    ("team", "id"),
    ("response_url",),
]
INTERACTION_VALUES = st.one_of(
    odd_values,
    st.sampled_from(SPECIAL_NUMBERS),
    st.sampled_from(
        [
            *["block_actions", "view_submission", "feedback_buttons", "up:gpt", "down:", "up", "sideways:m", "1.2"],
            *RESPONSE_URLS,
            *IDS,
        ]
    ),
)
interaction_payloads = mutated(
    st.builds(lambda: slack_requests.feedback_payload("up:gpt", "1700000000.000100", RESPONSE_URLS[0])),
    INTERACTION_PATHS,
    INTERACTION_VALUES,
)
interaction_bodies = st.one_of(
    interaction_payloads.map(lambda p: slack_requests.interaction_form(json.dumps(p))),
    interaction_payloads.map(lambda p: slack_requests.interaction_form(json.dumps(p))),  # twice as likely
    json_values.map(lambda v: slack_requests.interaction_form(json.dumps(v))),
    st.binary(max_size=300),
    st.just(slack_requests.interaction_form("[" * 100_000)),
)


# --- fixtures -------------------------------------------------------------------------------------------------------


@dataclass
class Invokes:
    """The fake Lambda endpoint, and how many invokes it had when the test started."""

    server: FakeServer
    before: int

    def new(self) -> list[Received]:
        return self.server.received[self.before :]


@pytest.fixture(scope="module")
def lambda_endpoint() -> Iterator[FakeServer]:
    # One for the module: the tests count the invokes since they started.
    with fake_lambda() as server:
        yield server


@pytest.fixture
def lambda_mode(lambda_endpoint: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Invokes:
    """The HTTP function as in Lambda: every dispatch is an Event invoke to the fake endpoint."""
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "mameka-dev")
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_endpoint.url)
    return Invokes(lambda_endpoint, len(lambda_endpoint.received))


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(app, stage_name="dev", project_dir=str(ROOT)) as client:
        yield client


def send(client: Client, lambda_server: FakeServer, request: Request) -> tuple[int, list[Received]]:
    """Send ``request``; its status and the invokes it caused (an invoke is done when it returns)."""
    headers = dict(request.headers)
    if request.signed_at is not None:
        timestamp = int(time.time()) + request.signed_at
        headers["X-Slack-Request-Timestamp"] = str(timestamp)
        headers["X-Slack-Signature"] = slack_requests.sign(SIGNING_SECRET, timestamp, request.body)
    before = len(lambda_server.received)
    response = client.http.request(request.method, request.path, headers=headers, body=request.body)
    return response.status_code, lambda_server.received[before:]


def assert_only_valid_jobs_dispatched(path: str, body: bytes, status: int, invokes: list[Received]) -> None:
    """Nothing reaches the worker but a valid job carrying what the request said."""
    assert status < 500, (status, body)
    assert len(invokes) <= 1
    for invoke in invokes:
        assert status == 200
        assert invoke.headers.get("x-amz-invocation-type") == "Event"
        job = jobs.from_payload(invoke.json())  # ValueError: garbage was dispatched
        if path == COMMANDS:
            sent = command.parse(body)
            assert isinstance(job, jobs.SlashCommandJob)
            assert job.text == sent.text and 0 < len(job.text) <= Settings().max_input_chars
            assert job.response_url == sent.response_url
            # The same rule the worker applies: in Lambda, only https to RESPONSE_URL_HOSTS.
            assert command.response_url_refusal(job.response_url, DEFAULT_RESPONSE_URL_HOSTS, in_lambda=True) is None
        elif path == INTERACTIONS:
            vote = interactions.parse(body)
            assert isinstance(job, jobs.FeedbackJob) and isinstance(vote, interactions.FeedbackVote)
            assert (job.vote, job.model, job.message_ts) == (vote.vote, vote.model, vote.message_ts)
            assert (job.team_id, job.channel_id, job.user_id) == (vote.team_id, vote.channel_id, vote.user_id)
            assert job.response_url == vote.response_url
            if job.response_url is not None:
                assert (
                    command.response_url_refusal(job.response_url, DEFAULT_RESPONSE_URL_HOSTS, in_lambda=True) is None
                )
        else:
            envelope = json.loads(body)
            assert envelope.get("type") == "event_callback"
            assert isinstance(job, jobs.MessageJob | jobs.AssistantThreadStartedJob)
            assert job.id == envelope["event_id"] and job.team_id
            assert math.isfinite(job.asked_at)


# --- (a) and (b) ----------------------------------------------------------------------------------------------------


def test_fuzz_any_request_to_either_route_gets_no_5xx(client: Client, lambda_mode: Invokes) -> None:
    @settings(FUZZ, max_examples=examples(1000))
    @given(request=requests_of_any_kind)
    def check(request: Request) -> None:
        status, invokes = send(client, lambda_mode.server, request)
        assert status < 500, request
        if request.signed_at is None:
            assert invokes == []  # unsigned: nothing dispatched, whatever the headers say
        else:
            assert_only_valid_jobs_dispatched(request.path, request.body, status, invokes)

    check()


def test_fuzz_signed_forms_get_no_5xx_and_dispatch_only_valid_commands(client: Client, lambda_mode: Invokes) -> None:
    dispatched: list[int] = []

    @settings(FUZZ, max_examples=examples(1000))
    @given(body=forms())
    def check(body: bytes) -> None:
        request = Request("POST", COMMANDS, body, {"Content-Type": slack_requests.FORM}, 0)
        status, invokes = send(client, lambda_mode.server, request)
        assert_only_valid_jobs_dispatched(COMMANDS, body, status, invokes)
        dispatched.append(len(invokes))

    check()
    assert 0 < sum(dispatched) < len(dispatched)  # the generator reached both sides of the line


def test_fuzz_signed_json_gets_no_5xx_and_dispatches_only_valid_events(client: Client, lambda_mode: Invokes) -> None:
    dispatched: list[int] = []

    @settings(FUZZ, max_examples=examples(1000))
    @given(body=json_bodies)
    def check(body: bytes) -> None:
        request = Request("POST", EVENTS, body, {"Content-Type": slack_requests.JSON}, 0)
        status, invokes = send(client, lambda_mode.server, request)
        assert_only_valid_jobs_dispatched(EVENTS, body, status, invokes)
        dispatched.append(len(invokes))

    check()
    assert 0 < sum(dispatched) < len(dispatched)


def test_fuzz_signed_clicks_get_no_5xx_and_dispatch_only_valid_votes(client: Client, lambda_mode: Invokes) -> None:
    dispatched: list[int] = []

    @settings(FUZZ, max_examples=examples(600))
    @given(body=interaction_bodies)
    def check(body: bytes) -> None:
        request = Request("POST", INTERACTIONS, body, {"Content-Type": slack_requests.FORM}, 0)
        status, invokes = send(client, lambda_mode.server, request)
        assert_only_valid_jobs_dispatched(INTERACTIONS, body, status, invokes)
        dispatched.append(len(invokes))

    check()
    assert 0 < sum(dispatched) < len(dispatched)


# --- (c) the worker -------------------------------------------------------------------------------------------------

WORKER_SECONDS = 15.0  # a message job keeps 10 s back for finishing its stream: leave the LLM some
FAKE_REPLY_URL = "reply-here"  # replaced by a fresh path on the fake response_url server
JOB_URLS = [
    FAKE_REPLY_URL,
    "gone",  # the fake answers 404 expired_url
    "https://a..b/x",
    "http://[::1/x",
    "ftp://127.0.0.1/x",
    "https://hooks.slack.com/commands/T/1/x",  # not in RESPONSE_URL_HOSTS here: refused, not posted
    "http://10.0.0.1/x",
    "",
]


@dataclass(frozen=True)
class Ago:
    """``asked_at``: this many seconds before the example runs (JSON never makes one)."""

    seconds: float


def _job(kind: str, age: float = 1.0) -> dict[str, Any]:
    ts = slack_requests.new_ts()
    common = {"id": str(uuid.uuid4()), "asked_at": Ago(age), "team_id": slack_requests.TEAM_ID}
    if kind == "slash_command":
        return {
            "kind": kind,
            **common,
            "text": "hi",
            "response_url": FAKE_REPLY_URL,
            "user_id": slack_requests.USER_ID,
            "channel_id": slack_requests.CHANNEL_ID,
        }
    if kind == "message":
        return {
            "kind": kind,
            **common,
            "channel_id": slack_requests.CHANNEL_ID,
            "user_id": slack_requests.USER_ID,
            "text": "hi",
            "ts": ts,
            "thread_ts": None,
            "bot_user_id": slack_requests.BOT_USER_ID,
        }
    if kind == "feedback":
        return {
            "kind": kind,
            **common,
            "channel_id": slack_requests.CHANNEL_ID,
            "user_id": slack_requests.USER_ID,
            "message_ts": ts,
            "vote": "up",
            "model": "gpt-x",
            "response_url": FAKE_REPLY_URL,
        }
    return {
        "kind": kind,
        **common,
        "channel_id": slack_requests.DM_CHANNEL_ID,
        "thread_ts": ts,
        "user_id": slack_requests.USER_ID,
    }


JOB_FIELDS = ["kind", "id", "asked_at", "team_id", "channel_id", "user_id", "text", "response_url", "ts", "thread_ts"]
JOB_VALUES = st.one_of(
    odd_values,
    st.sampled_from(SPECIAL_NUMBERS),  # directly too: deep in odd_values, 150 examples may miss them
    st.sampled_from(JOB_URLS),
    st.sampled_from(list(jobs.KINDS)),
    st.floats(-1000, 1000).map(Ago),
    st.just(Ago(3600.0)),  # older than JOB_MAX_AGE_SECONDS: "too busy"
)
# One in four waited an hour in Lambda's queue: past JOB_MAX_AGE_SECONDS, "too busy".
valid_jobs = st.builds(_job, st.sampled_from(list(jobs.KINDS)), st.sampled_from([1.0, 1.0, 1.0, 3600.0]))
near_valid_jobs = mutated(valid_jobs, [(name,) for name in JOB_FIELDS], JOB_VALUES)
job_payloads = st.one_of(near_valid_jobs, near_valid_jobs, json_values)  # two thirds near-valid


def _resolve(payload: Any, reply_url: str, gone_url: str) -> Any:
    """The payload as the worker gets it: the markers made real, then through JSON as Lambda sends it."""
    if isinstance(payload, dict):
        payload = dict(payload)
        for name, value in payload.items():
            if isinstance(value, Ago):
                payload[name] = time.time() - value.seconds
            elif value == FAKE_REPLY_URL:
                payload[name] = reply_url
            elif value == "gone":
                payload[name] = gone_url
    return json.loads(json.dumps(payload))


def response_url_server(received: Received) -> Reply:
    return Reply(404, "expired_url") if received.path.startswith("/gone") else Reply(200, "ok")


def test_fuzz_any_payload_into_the_worker_never_raises(capsys: pytest.CaptureFixture[str]) -> None:
    with (
        fake_openai() as openai_server,
        FakeServer(response_url_server) as reply_server,
        FakeSlackAPI() as slack_api,
    ):
        env = {
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": openai_server.url + "/v1",
            "OPENAI_TIMEOUT_SECONDS": "2",
            "SLACK_BOT_TOKEN": FAKE_BOT_TOKEN,
            "SLACK_API_URL": slack_api.url,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "RESPONSE_URL_HOSTS": "127.0.0.1",  # whatever a payload says, no reply leaves loopback
        }
        outcomes: list[str] = []

        @settings(FUZZ, max_examples=examples(500, at_least=250))  # enough to reach every outcome below
        @given(raw=job_payloads)
        def check(raw: Any) -> None:
            new_container()  # fresh claims: a generated id may repeat an earlier example's
            reply_path = f"/commands/{uuid.uuid4().hex}"
            payload = _resolve(raw, reply_server.url + reply_path, reply_server.url + "/gone")
            capsys.readouterr()
            started = time.monotonic()
            assert worker.run(payload, Deadline.in_seconds(WORKER_SECONDS), env) is None
            assert time.monotonic() - started < WORKER_SECONDS + 2.0
            lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
            answers = [line for line in lines if line.get("event") == "answer"]
            assert len(answers) == 1, lines
            outcomes.append(answers[0]["outcome"])
            # The catch-all is a last guard: reaching it means a handler met a failure it does not handle.
            assert answers[0]["outcome"] != "internal_error", lines
            try:
                job = jobs.from_payload(payload)
            except ValueError:
                assert answers[0]["outcome"] == "bad_payload"
                return
            if isinstance(job, jobs.SlashCommandJob) and job.response_url == reply_server.url + reply_path:
                assert len(reply_server.requests_to(reply_path)) == 1  # answered exactly once
            if isinstance(job, jobs.FeedbackJob) and job.response_url == reply_server.url + reply_path:
                assert len(reply_server.requests_to(reply_path)) == 1  # a first vote: thanked once

        check()
        # The generator reached the interesting places: drops, answers, too-late jobs, refused URLs.
        assert {"bad_payload", "answered", "too_late", "vote_recorded"} <= set(outcomes), sorted(set(outcomes))


# --- what the fuzzer found: each a regular test that failed before its fix -------------------------------------------


def signed_post(client: Client, path: str, body: bytes, content_type: str) -> Any:
    headers = slack_requests.signed_headers(SIGNING_SECRET, body, content_type=content_type)
    return client.http.post(path, headers=headers, body=body)


@pytest.mark.parametrize("subtype", [[], {}, ["file_share"]])
def test_an_event_whose_subtype_is_not_a_string_is_ignored_not_a_500(
    client: Client, lambda_mode: Invokes, subtype: Any
) -> None:
    # Was a TypeError (unhashable type: 'list') from `subtype not in ANSWERED_SUBTYPES`: a 500.
    body = slack_requests.mention_event("hi", subtype=subtype)
    response = signed_post(client, EVENTS, body, slack_requests.JSON)
    assert (response.status_code, response.json_body) == (200, {})
    assert lambda_mode.new() == []


@pytest.mark.parametrize(
    "event_time", [b"1" + b"0" * 400, b"-1" + b"0" * 400, b"NaN", b"Infinity", b"-Infinity", b"1e400"]
)
def test_an_event_time_that_is_no_finite_number_is_a_400(
    client: Client, lambda_mode: Invokes, event_time: bytes
) -> None:
    # Was a 500 (OverflowError from float() of a 401-digit int), or for NaN and Infinity a job
    # dispatched with a time that JSON cannot carry, which the worker then dropped unanswered.
    envelope = json.loads(slack_requests.mention_event("hi"))
    envelope["event_time"] = 0
    body = json.dumps(envelope).encode().replace(b'"event_time": 0', b'"event_time": ' + event_time)
    response = signed_post(client, EVENTS, body, slack_requests.JSON)
    assert (response.status_code, response.json_body) == (400, {"error": "event_callback has no event_time"})
    assert lambda_mode.new() == []


@pytest.mark.parametrize("kind", [[], {}, ["slash_command"]])
def test_a_payload_whose_kind_is_not_a_string_is_dropped_without_raising(
    kind: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was a TypeError (unhashable type) from KINDS.get(kind), past the worker's ValueError guard.
    with pytest.raises(ValueError, match="unknown kind"):
        jobs.from_payload({"kind": kind})
    assert worker.run({"kind": kind}, Deadline.in_seconds(5), {}) is None
    assert json.loads(capsys.readouterr().out) == {"event": "answer", "outcome": "bad_payload"}


@pytest.mark.parametrize("missing", ["team_id", "channel_id", "user_id"])
def test_a_command_without_its_ids_is_a_400_and_nothing_is_dispatched(
    client: Client, lambda_mode: Invokes, missing: str
) -> None:
    # Was acknowledged ("Thinking…") and dispatched with an empty id, which the worker's
    # from_payload refuses: the user waited for an answer that never came.
    body = slack_requests.command_form("hi", "https://hooks.slack.com/commands/T0001/1/x", **{missing: None})
    response = signed_post(client, COMMANDS, body, slack_requests.FORM)
    assert response.status_code == 400
    assert lambda_mode.new() == []


def test_a_payload_whose_asked_at_is_past_float_range_is_dropped_without_raising(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Was an OverflowError from math.isfinite(10**400), past the worker's ValueError guard.
    payload = {**slash_payload_for_fuzz(), "asked_at": 10**400}
    with pytest.raises(ValueError, match="asked_at"):
        jobs.from_payload(payload)
    assert worker.run(payload, Deadline.in_seconds(5), {}) is None
    assert json.loads(capsys.readouterr().out) == {"event": "answer", "outcome": "bad_payload"}


def slash_payload_for_fuzz() -> dict[str, Any]:
    return {**_job("slash_command"), "asked_at": time.time(), "response_url": "http://127.0.0.1:9/x"}


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("message", "ts", "Ev0FUZZ"),
        ("message", "ts", "1700000000.abc"),
        ("message", "ts", "9" * 5000),
        ("message", "thread_ts", "abc"),
        ("message", "thread_ts", "١٧٠٠٠٠٠٠٠٠.000100"),  # digits, but not ASCII ones
        ("assistant_thread_started", "thread_ts", "x"),
    ],
)
def test_a_job_whose_ts_is_no_slack_timestamp_is_dropped_not_an_internal_error(
    conversation_env: dict[str, str], kind: str, field: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A message job with ts "Ev0FUZZ" reached the worker's catch-all (history.to_chat raised
    # "the current message has no valid ts"): outcome internal_error, and nobody was answered.
    payload = {**_job(kind), "asked_at": time.time(), field: value}
    with pytest.raises(ValueError, match=field):
        jobs.from_payload(payload)
    assert worker.run(payload, Deadline.in_seconds(15), conversation_env) is None
    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert line == {"event": "answer", "outcome": "bad_payload"}


@pytest.mark.parametrize(
    "body",
    [
        slack_requests.mention_event("hi", ts="Ev0FUZZ"),
        slack_requests.mention_event("hi", thread_ts="abc"),
        slack_requests.dm_event("hi", ts="9" * 5000),
        slack_requests.assistant_thread_started_event(thread_ts="x"),
    ],
    ids=["ts", "thread_ts", "long_ts", "pane_thread_ts"],
)
def test_an_event_whose_ts_is_no_slack_timestamp_is_a_400(client: Client, lambda_mode: Invokes, body: bytes) -> None:
    # Was dispatched: a job the worker could only end in its catch-all.
    response = signed_post(client, EVENTS, body, slack_requests.JSON)
    assert response.status_code == 400 and "ts" in response.json_body["error"]
    assert lambda_mode.new() == []
