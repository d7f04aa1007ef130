"""Developer kit shared by tests/, scripts/ and bench/: what Slack sends us, and every fake we talk to.

Not deployed (Chalice packages only ``app.py`` and ``chalicelib/``). Standard library only, so
that scripts and the benchmark can import it without the project's dependencies, and it never
imports ``chalicelib``: it describes Slack, OpenAI and AWS, not our code, so tests that use it
check our code against an independent picture of them. Every fake is a real HTTP server on
127.0.0.1 that the real clients (openai, slack_sdk, boto3, urllib) talk to.

- ``devkit.slack_requests``: slash-command forms, Events API envelopes, v0 signatures.
- ``devkit.http_fake``: the server core: ``LoopbackServer`` (bind, serve, stop), and
  ``FakeServer``, which records each request and answers from a script (``Reply``), with the
  ways a server misbehaves (pause, stall, drop) and ``/_stats`` for another process.
- ``devkit.fake_openai``: the Chat Completions API, whole or streamed (``StreamReply``:
  faults, finish reasons, usage, tool calls, a model's pace), parameter refusals, the
  benchmark's paced answers.
- ``devkit.fake_lambda``: the Lambda Invoke API (202 to an Event invoke).
- ``devkit.fake_response_url``: a slash command's ``response_url``, answering as Slack does.
- ``devkit.slack_model``: a Slack workspace's messages, threads, streams, statuses and
  prompts, and what Slack refuses: pure, no I/O.
- ``devkit.fake_slack_api``: the Slack Web API over that model, as ``slack_sdk.WebClient``
  calls it, with scripted trouble (``fail_next``, ``delay_next``); ``python -m
  devkit.fake_slack_api`` serves it on port 8790.
- ``devkit.stand_in_model``: ``make demo``'s model, labelled as no LLM: a deterministic
  answer built from the question and the thread, served by ``fake_openai``.
- ``devkit.serve``: ``python -m devkit.serve KIND...`` runs fakes in a process of their own
  (the benchmark's), and ``Served`` starts and reads them from the parent.
"""
