"""The bot's work, kept out of ``app.py`` so that ``app.py`` reads as a table of contents.

One module per concept; the module index is the README's "Layout" section (a test keeps it
complete), and each module's docstring states its contract. A job's journey reads one way:
``gateway`` (the HTTP function) → ``dispatch`` → ``worker`` → ``slash`` | ``conversation`` →
``answer`` → ``llm`` and ``slack``; no module imports one that imports it back.

Only the entry points (``gateway``, ``worker``, and ``chalice_local`` at import) read the
environment, once per call, into a ``settings.Settings`` that they pass down. What a container
keeps between calls is registered in ``container``.

The HTTP function imports neither ``openai`` nor ``slack_sdk`` (nor ``requests``): its cold
start is what Slack's 3 seconds measure.
"""
