"""Slack's side of the bot.

``signature``, ``command`` and ``messages`` are pure and cheap to import (the HTTP function
uses them); ``response_url`` is the one seam that talks to Slack over HTTP (worker only).
"""
