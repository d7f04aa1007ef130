"""`make demo`: four scenes of the real app on this machine, against stand-ins, without keys. Not deployed.

    make demo                                                          # a stand-in model
    OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_MODEL=llama3.2 make demo   # a local model

Contract:

- It starts the playground (scripts/playground.py: the real app under ``chalice local``, the
  worker in-process as in `make run`, a fake Slack Web API and, unless ``OPENAI_BASE_URL`` is
  given, the stand-in model ``devkit.stand_in_model``) and plays four scenes on it, printed on
  stdout as Slack would show them (scripts/ask.py's requests and rendering, Markdown included):
  1. a slash command: its acknowledgement, then its reply;
  2. a mention: the answer streamed into its thread;
  3. a follow-up in that thread: the answer uses the thread (the stand-in counts and quotes it);
  4. an error, as the bot tells it: the stand-in model fails the request (HTTP 429) and the
     thread gets the bot's one plain-language line. A real model cannot be made to fail on
     cue, so with ``OPENAI_BASE_URL`` the error is a question over the bot's length limit.
- ``OPENAI_BASE_URL`` (with ``OPENAI_MODEL``, both required then) points the bot at a local
  OpenAI-compatible server instead of the stand-in: Ollama, llama.cpp's server, vLLM. It must
  be on loopback: the demo sends nothing off this machine (exit 2 otherwise).
- Only loopback: the app gets a fresh environment, not this one (``playground.bot_environment``):
  no key, token, AWS setting or proxy of the user's reaches it.
- Progress goes to stderr. Exit 0 when every scene went as expected (an answer arrived for
  1-3; for 4, exactly one message, the expected error line); 1 otherwise, with one line saying
  which scene failed and where the bot's log is kept; 2 usage; 130 interrupted. Every exit
  path (Ctrl-C and SIGTERM included) stops chalice local and the stand-ins.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# For ask, playground and common (scripts/ is not a package), also when a test imports this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ask
import playground
from common import COMMAND_PATH, EVENTS_PATH, ScriptError, UsageError, route_url

from chalicelib.settings import Settings
from chalicelib.slack import messages
from devkit import stand_in_model
from devkit.slack_model import Message

COMMAND_QUESTION = "東京でおすすめの散歩道は？"
MENTION_QUESTION = "鎌倉でおすすめの散歩道は？"
FOLLOW_UP_QUESTION = "その近くでランチするならどこ？"
FAILING_QUESTION = "京都でおすすめの散歩道は？"


class SceneFailed(Exception):
    """A scene did not go as expected; ``str(error)`` says how."""


@dataclass(frozen=True)
class Demo:
    """What every scene uses: the playground, how long an answer may take, the terminal."""

    stage: playground.Stage
    timeout: float
    style: ask.Style
    out: TextIO
    err: TextIO

    def options(self, question: str, event: str = "command") -> ask.Options:
        url = route_url(self.stage.url, COMMAND_PATH if event == "command" else EVENTS_PATH)
        return ask.Options(question, self.stage.secret, url, self.timeout, event, bot_token=self.stage.bot_token)


def header(demo: Demo, number: int, text: str) -> None:
    demo.out.write("\n" + demo.style.bold(f"━━ {number}. {text}") + "\n")
    demo.out.flush()


def slash_command(demo: Demo) -> None:
    if ask.ask_command(demo.options(COMMAND_QUESTION), demo.style, demo.out, demo.err) != 0:
        raise SceneFailed("the reply is an error line, not an answer")


def mention(demo: Demo, question: str, thread_ts: str | None = None) -> tuple[str, list[Message]]:
    """Asks ``@mameka question`` (in the thread ``thread_ts``, or a new one) and shows the answer as
    it streams; returns the thread's ts and the bot's messages for this question."""
    stage = demo.stage
    view = ask.answer_in_thread(
        demo.options(question, "mention"), stage.slack, stage.calls, demo.style, demo.out, demo.err, thread_ts
    )
    return view.thread_ts, view.messages


def expect_answer(answer: list[Message]) -> None:
    notices = [m.text for m in answer if not m.markdown]
    if notices:
        raise SceneFailed(f"the bot said {notices[-1]!r} instead of answering")
    if not any(m.text.strip() for m in answer):
        raise SceneFailed("no answer text arrived")


def error_scene(demo: Demo) -> None:
    if demo.stage.stand_in is not None:
        demo.stage.stand_in.script.append(stand_in_model.failure())  # the next request to the model fails
        header(demo, 4, f"@{ask.COMMAND[1:]} {FAILING_QUESTION}   (the stand-in model is made to fail this one)")
        question, expected = FAILING_QUESTION, messages.notice("rate_limited")
    else:
        limit = Settings().max_input_chars  # the app's default: the playground passes no MAX_INPUT_CHARS
        question = ("長い質問。" * (limit // 5 + 1))[: limit + 1]
        header(demo, 4, f"@{ask.COMMAND[1:]} {ask.one_line(question)}: over the bot's limit of {limit:,}")
        expected = messages.too_long(len(question), limit)["text"]
    _, said = mention(demo, question)
    if [m.text for m in said] != [expected]:
        shown = [m.text for m in said] or "nothing"
        raise SceneFailed(f"expected the one line {expected!r}; the bot said {shown!r}")


def play(demo: Demo) -> None:
    """The four scenes, in order; ``SceneFailed`` names the first that did not go as expected."""
    with scene(1, "a slash command"):
        header(demo, 1, f"{ask.COMMAND} {COMMAND_QUESTION}")
        slash_command(demo)
    with scene(2, "a mention, answered in its thread"):
        header(demo, 2, f"@{ask.COMMAND[1:]} {MENTION_QUESTION}   (in a channel: answered in its thread)")
        thread_ts, answer = mention(demo, MENTION_QUESTION)
        expect_answer(answer)
    with scene(3, "a follow-up in the thread"):
        header(demo, 3, f"@{ask.COMMAND[1:]} {FOLLOW_UP_QUESTION}   (in the same thread)")
        _, answer = mention(demo, FOLLOW_UP_QUESTION, thread_ts)
        expect_answer(answer)
    with scene(4, "an error"):
        error_scene(demo)


@contextlib.contextmanager
def scene(number: int, name: str) -> Iterator[None]:
    try:
        yield
    except (SceneFailed, ask.Failure, UsageError) as error:
        raise SceneFailed(f"scene {number} ({name}) failed: {error}") from None


# --- main -------------------------------------------------------------------------------------------------------------


def run(model: playground.Model, timeout: float, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    started = time.monotonic()
    style = ask.Style(out.isatty() and not environ.get("NO_COLOR"))
    out.write(
        style.dim(
            f"mameka (the real app, chalice local) with {model.describe()} and a fake Slack, "
            "all on 127.0.0.1: no keys, no workspace, no AWS."
        )
        + "\n"
    )
    out.flush()
    try:
        with playground.started(model, environ, err) as stage:
            try:
                play(Demo(stage, timeout, style, out, err))
            except SceneFailed as error:
                print(f"error: {error}; the bot's log: {stage.keep_log()}", file=err)
                return 1
    except ScriptError as error:  # the playground did not start
        print(f"error: {error}", file=err)
        return 1
    print(f"all four scenes went as expected, in {time.monotonic() - started:.1f} s", file=err)
    return 0


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo",
        description="Run the bot on this machine against stand-ins and show four scenes as Slack would. "
        "OPENAI_BASE_URL (loopback) and OPENAI_MODEL use a local OpenAI-compatible server instead of the stand-in.",
    )
    parser.add_argument(
        "--timeout", type=float, help=f"seconds each scene may take (default {playground.STAND_IN_TIMEOUT:g}; "
        f"{playground.MODEL_TIMEOUT:g} with OPENAI_BASE_URL)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")  # a terminal that cannot show ⏳ still shows the answer
    playground.stop_on_signals()
    try:
        model = playground.parse_model(environ)
        timeout = model.timeout if args.timeout is None else args.timeout
        if not 0 < timeout < float("inf"):
            raise UsageError(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
        return run(model, timeout, environ, sys.stdout, sys.stderr)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
