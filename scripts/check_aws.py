"""Can boto3 reach AWS from here? Asked before ``make deploy`` and ``make secrets`` do anything. Not deployed.

Contract: ``problem()`` returns None when boto3's usual chain (``AWS_PROFILE``, the
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` variables, ``~/.aws`` files, SSO, container
or instance roles) yields credentials and a region is set; otherwise one line, without a
trailing period, that says what is missing and how to set it. It makes no AWS request:
credentials are looked up, not tried (expired ones fail later, at the first call, with
AWS's own message). It never shows a credential.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

HOW_CREDENTIALS = (
    "run `aws configure` (or `aws sso login` for an SSO profile), or set AWS_PROFILE, "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
# boto3 (and so Chalice) reads AWS_DEFAULT_REGION, not AWS_REGION, which only the AWS CLI v2 reads.
HOW_REGION = "set AWS_DEFAULT_REGION, or a region in your profile with `aws configure`"


def problem(session_factory: Callable[[], Any] | None = None, environ: Mapping[str, str] = os.environ) -> str | None:
    """What stops boto3 from calling AWS, in one line; None if nothing does."""
    from botocore.exceptions import BotoCoreError

    if session_factory is None:
        import boto3

        session_factory = boto3.Session
    try:
        session = session_factory()
        credentials = session.get_credentials()
        region = session.region_name
    except BotoCoreError as error:  # e.g. ProfileNotFound for a mistyped AWS_PROFILE
        return f"AWS is not set up: {error}"
    how_region = HOW_REGION
    if environ.get("AWS_REGION", "").strip():
        how_region += " (AWS_REGION is set, but boto3 does not read it)"
    if credentials is None and not region:
        return f"no AWS credentials and no region found: {HOW_CREDENTIALS}; and {how_region}"
    if credentials is None:
        return f"no AWS credentials found: {HOW_CREDENTIALS}"
    if not region:
        return f"no AWS region set: {how_region}"
    return None
