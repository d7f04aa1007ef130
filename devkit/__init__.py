"""Developer kit shared by tests/, scripts/ and bench/: what Slack sends us, and a fake Slack Web API.

Not deployed (Chalice packages only ``app.py`` and ``chalicelib/``). Standard library only, so
that scripts and the benchmark can import it without the project's dependencies, and it never
imports ``chalicelib``: it describes Slack, not our code, so tests that use it check our code
against an independent picture of Slack.

- ``devkit.slack_requests``: slash-command forms, Events API envelopes, v0 signatures.
- ``devkit.fake_slack_api``: a real HTTP server on 127.0.0.1 that ``slack_sdk.WebClient``
  talks to, keeping a model of the messages a user would see.
"""
