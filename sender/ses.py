"""The SES v1 provider: SendBulkTemplatedEmail through boto3, answers turned into results.

botocore's own retries are switched off (retry mode "standard", total_max_attempts=1: one attempt per call): the sender
retries per destination, only what failed, bounded by MAILROOM_SEND_DEADLINE (retry.py).
Two retry layers would multiply attempts and ignore the deadline.

The endpoint is never set here: boto3's standard configuration decides, so
AWS_ENDPOINT_URL_SES points the sender at an emulator such as moto_server.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlencode

import boto3
import botocore.exceptions
from botocore.config import Config

from mailroom.settings import ConfigError
from sender.outputs import Outputs
from sender.provider import BulkSend, CallFailed, DestinationResult

log = logging.getLogger("sender.ses")
FALLBACK_SEND_RATE = 14.0


def make_client(max_pool: int = 10) -> Any:
    """An SES v1 client from the standard chain; a clear error when no region is configured."""
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
            "no AWS credentials found in boto3's standard chain "
            "(environment, ~/.aws, instance role); or set MAILROOM_DEBUG=true to print "
            "instead of sending",
        )
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


class SesProvider:
    def __init__(self, client: Any, outputs: Outputs | None = None) -> None:
        self.client = client
        self.outputs = outputs
        if outputs is not None:
            client.meta.events.register("after-call.ses.SendBulkTemplatedEmail", self._save_error)
        client.meta.events.register("before-sign.ses.SendBulkTemplatedEmail", _encode_form_once)

    def _save_error(self, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        """Keep the raw body of every SES error answer, as the earlier implementation did."""
        if http_response is None or http_response.status_code < 400 or self.outputs is None:
            return
        request_id = ((parsed or {}).get("ResponseMetadata") or {}).get("RequestId") or ""
        try:
            path = self.outputs.save_error(http_response.content, request_id)
            log.warning("SES answered HTTP %s; response saved to %s", http_response.status_code, path)
        except OSError as exc:
            log.error("could not save the SES error response: %s", exc)

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        params: dict[str, Any] = {
            "Source": send.source,
            "Template": send.template,
            "DefaultTemplateData": send.default_data,
            "Destinations": [
                {"Destination": {"ToAddresses": [d.email]}, "ReplacementTemplateData": d.data}
                for d in send.destinations
            ],
        }
        if send.config_set:
            params["ConfigurationSetName"] = send.config_set
        try:
            answer = self.client.send_bulk_templated_email(**params)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise CallFailed(error.get("Code", "Unknown"), error.get("Message", str(exc)), status) from None
        except (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError) as exc:
            raise CallFailed("NetworkError", str(exc)) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise CallFailed("NetworkError", f"{type(exc).__name__}: {exc}") from None
        statuses = answer.get("Status", [])
        results = [DestinationResult(s.get("Status", "Success"), s.get("MessageId"), s.get("Error")) for s in statuses]
        if len(results) != len(send.destinations):
            # An answer that does not say what happened to each destination: retry them all.
            raise CallFailed(
                "Failed", f"SES returned {len(results)} statuses for {len(send.destinations)} destinations", 200
            )
        return results


def _encode_form_once(request: Any = None, **_: Any) -> None:
    """URL-encode the query-protocol form body once, not once for signing and again to send.

    botocore keeps the body as a dict and encodes it on every `prepare()`; for 50
    destinations that encoding is the largest CPU cost of a call. The bytes are the same.
    """
    if request is not None and isinstance(request.data, dict):
        request.data = urlencode(request.data, doseq=True)


def account_send_rate(client: Any) -> float:
    """The account's MaxSendRate from GetSendQuota, else 14 (the SES sandbox rate)."""
    try:
        rate = float(client.get_send_quota()["MaxSendRate"])
        if rate > 0:
            log.info("using the account's MaxSendRate of %g emails/s (GetSendQuota)", rate)
            return rate
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, KeyError, ValueError) as exc:
        log.warning("GetSendQuota failed (%s); sending at most %g emails/s", exc, FALLBACK_SEND_RATE)
    return FALLBACK_SEND_RATE
