"""The SES v1 client, from boto3's standard chain: the sender's, and `mailroom templates push`'s.

The endpoint is never set here: boto3's standard configuration decides, so
AWS_ENDPOINT_URL_SES points both at an emulator such as moto_server. Missing region or
credentials are a ConfigError naming the variable, before any call.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

from mailroom.settings import ConfigError


def make_client(max_pool: int = 10) -> Any:
    """An SES v1 client from the standard chain; a clear error when no region is configured."""
    session = checked_session()
    # parameter_validation=False: we build every parameter ourselves and SES validates them
    # again; client-side validation of 50 destinations is a tenth of the CPU of a call.
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=max_pool,
        parameter_validation=False,
        connect_timeout=5,
        read_timeout=30,
    )
    return session.client("ses", config=config)


SENDER_HINT = "; or set MAILROOM_DEBUG=true to print instead of sending"


def checked_session(hint: str = SENDER_HINT) -> boto3.session.Session:
    """A boto3 session from the standard chain, with a region and credentials (ConfigError if not);
    `hint` ends the message about missing credentials."""
    session = boto3.session.Session()
    if not session.region_name and os.environ.get("AWS_REGION"):
        # boto3 reads AWS_DEFAULT_REGION and the config file; AWS_REGION is the name the
        # other AWS SDKs use, so it is honoured too.
        session = boto3.session.Session(region_name=os.environ["AWS_REGION"])
    if not session.region_name:
        raise ConfigError(
            "AWS_REGION",
            "is not set and no region is configured for boto3; "
            "set AWS_REGION (or AWS_DEFAULT_REGION, or a region in ~/.aws/config)",
        )
    if session.get_credentials() is None:
        raise ConfigError(
            "AWS_ACCESS_KEY_ID",
            "no AWS credentials found in boto3's standard chain (environment, ~/.aws, instance role)" + hint,
        )
    return session
