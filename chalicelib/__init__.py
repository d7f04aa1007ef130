"""The bot's work, kept out of ``app.py`` so that ``app.py`` reads as a table of contents.

Modules, one concept each:

- ``settings``: every setting, read from the environment into a typed, frozen object; one
  table (a field per setting: variable, default, functions, parser, doc) that the checks and
  the README's settings table come from. Only the entry points (``gateway`` and ``worker``,
  and ``chalice_local`` at import) read the environment, once per call; everything below
  them takes the parsed ``Settings``.
- ``container``: what a Lambda container caches between invocations (clients, secrets,
  claims, counters, memos), registered in one place; ``container.reset()`` forgets it all.
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
