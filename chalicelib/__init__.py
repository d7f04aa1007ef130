"""The bot's work, kept out of ``app.py`` so that ``app.py`` reads as a table of contents.

Modules, one concept each:

- ``settings``: every setting, read from the environment into a typed, frozen object.
- ``secrets``: secrets from the environment or SSM Parameter Store, cached per container.
- ``slack``: Slack's side, as pure functions (signature, command parsing, message
  formatting) plus the one seam that POSTs to a ``response_url``.
- ``gateway``: the HTTP function's job (verify, parse, dispatch, acknowledge).
- ``dispatch``: the only place that knows how a job travels to the worker.
- ``worker``: the worker's job (ask the LLM, reply exactly once, never raise).
- ``llm``: the one seam to the OpenAI API, with a hard deadline.
- ``aws``, ``deadline``, ``logs``: small shared helpers (boto3 clients, a monotonic deadline,
  JSON log lines); ``chalice_local``: lets ``chalice local`` take bursts as API Gateway does.

The HTTP function imports neither ``openai`` nor ``slack_sdk`` (nor ``requests``): its cold
start is what Slack's 3 seconds measure.
"""
