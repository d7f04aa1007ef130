"""Slack's side of the bot (the README's "Layout" section lists each module).

``signature``, ``command``, ``events`` and ``messages`` are pure and cheap to import: the HTTP
function uses them. The worker's seams to Slack are ``response_url`` (a slash command's reply)
and ``web`` (the Web API, through slack_sdk), on which ``history`` and ``stream`` build.
"""
