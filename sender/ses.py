"""The SES v1 provider: SendBulkTemplatedEmail through boto3, answers turned into results.

botocore's own retries are switched off (retry mode "standard", total_max_attempts=1: one attempt per call): the sender
retries per destination, only what failed, bounded by MAILROOM_SEND_DEADLINE (retry.py).
Two retry layers would multiply attempts and ignore the deadline.

The endpoint is never set here: boto3's standard configuration decides, so
AWS_ENDPOINT_URL_SES points the sender at an emulator such as moto_server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import botocore.exceptions
from botocore.parsers import ResponseParserError

from mailroom.actions import Action
from mailroom.checks import Check
from mailroom.redirect import SUBJECT_TAG, has_subject_tag
from mailroom.ses_events import TAG_ACTION, TAG_TOKEN_REF
from sender.addresses import ascii_address
from sender.outputs import Outputs
from sender.provider import BulkSend, CallFailed, DestinationResult
from sender.retry import (
    UNKNOWN_FIX,
    Outcome,
    names,
    ses_error_outcome,
    ses_fix,
    ses_source_fix,
    ses_status_fix,
    ses_status_outcome,
    source_address,
)

log = logging.getLogger("sender.ses")


class SesProvider:
    """SendBulkTemplatedEmail, with every answer classified by the one outcome table (retry.py)."""

    name = "ses"
    # SES's mailbox simulator: accepts every message, without a bounce or a complaint, in the
    # sandbox too. The sender sends one probe there to tell a refused address from bad parameters.
    probe_address = "success@simulator.amazonses.com"

    def __init__(
        self,
        client: Any,
        outputs: Outputs | None = None,
        *,
        source: str = "",
        templates: Mapping[str, str] | None = None,
        config_set: str = "",
        subject_tag_required: bool = False,
    ) -> None:
        self.client = client
        # MAILROOM_REDIRECT_TO: the pushed subjects must start with the prefix variable
        self.subject_tag_required = subject_tag_required
        self.outputs = outputs
        self.source = source
        self.templates = dict(templates or {})
        self.config_set = config_set
        self.region = str(getattr(client.meta, "region_name", "") or "?")
        self.quota_rate: float | None = None  # MaxSendRate, once preflight has read it
        self._operation = client.meta.service_model.operation_model("SendBulkTemplatedEmail")
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

    def address(self, email: str) -> str:
        return ascii_address(email)

    def fix(self, code: str, template: str = "") -> str:
        if code == "MessageRejected":  # an operator fault only when it names the source
            return ses_source_fix(self.source, self.region)
        return ses_fix(code, template=template, config_set=self.config_set, source=self.source, region=self.region)

    def status_fix(self, status: str, template: str = "") -> str:
        """The fix for a destination's status: these come in HTTP 200 answers, which are not saved."""
        return ses_status_fix(
            status, template=template, config_set=self.config_set, source=self.source, region=self.region
        )

    def close(self) -> None:
        """Nothing to release."""

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        params: dict[str, Any] = {
            "Source": send.source,
            "Template": send.template,
            "DefaultTemplateData": send.default_data,
            "Destinations": [
                {
                    "Destination": {"ToAddresses": [d.email]},
                    "ReplacementTemplateData": d.data,
                    "ReplacementTags": message_tags(send.action, d.token_ref),
                }
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
            raise self._failed(error.get("Code") or "Unknown", error.get("Message") or str(exc), status, send) from None
        except botocore.exceptions.NoCredentialsError as exc:
            raise self._failed("NoCredentials", str(exc), None, send) from None
        except (botocore.exceptions.BotoCoreError, ResponseParserError) as exc:
            raise self._failed("", f"{type(exc).__name__}: {exc}", None, send, exc) from None
        statuses = answer.get("Status", [])
        if len(statuses) != len(send.destinations):
            # An answer that does not say what happened to each destination: retry them all.
            raise CallFailed(
                "Failed", f"SES returned {len(statuses)} statuses for {len(send.destinations)} destinations", 200
            )
        results = []
        for s in statuses:
            status, error = s.get("Status", "Success"), s.get("Error")
            outcome = ses_status_outcome(status, error, send.source)
            fix = self.status_fix(status, send.template) if outcome is Outcome.OPERATOR else ""
            if outcome is Outcome.OPERATOR and status == "MessageRejected":
                fix = ses_source_fix(send.source, self.region)
            results.append(DestinationResult(status, s.get("MessageId"), error, outcome, fix))
        return results

    def _failed(
        self, code: str, message: str, status: int | None, send: BulkSend, exc: Exception | None = None
    ) -> CallFailed:
        outcome = ses_error_outcome(code, message, status, operation_model=self._operation, exception=exc)
        if exc is not None and outcome is Outcome.RETRY:
            code = "NetworkError"
        elif exc is not None:
            code = type(exc).__name__
        fix = ""
        if code == "MessageRejected" and not names(message, [source_address(send.source)]):
            # the dispatcher rejects the recipients it names; naming none, it is the account's
            fix = "SES refused the whole call naming no recipient: read its message, fix the account, then restart"
        elif code == "MessageRejected":
            fix = ses_source_fix(send.source, self.region)
        elif outcome is Outcome.OPERATOR:
            fix = self.fix(code, send.template)
        return CallFailed(code, message, status, outcome, fix)

    # -- preflight -------------------------------------------------------------------------------
    def preflight(self) -> list[Check]:
        """Before any input is read: can this account send these templates from this source?"""
        return [self._check_source(), *self._check_templates(), self._check_config_set(), *self._check_account()]

    def _ask(self, name: str, call: Callable[[], Any]) -> tuple[Any, Check | None]:
        """Run one read-only SES call; a failure becomes a failed Check with the fix."""
        try:
            return call(), None
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code") or "Unknown"
            message = exc.response.get("Error", {}).get("Message") or str(exc)
            return None, Check(name, False, f"SES answered {code}: {message}", self.fix(code))
        except botocore.exceptions.NoCredentialsError as exc:
            return None, Check(name, False, str(exc), self.fix("NoCredentials"))
        except botocore.exceptions.BotoCoreError as exc:
            return None, Check(name, False, f"SES could not be reached: {exc}", "check the network and AWS_REGION")
        except ResponseParserError as exc:
            return None, Check(name, False, f"the SES endpoint gave an answer that is not SES's: {exc}", UNKNOWN_FIX)

    def _check_source(self) -> Check:
        address = source_address(self.source)
        domain = address.rpartition("@")[2]
        answer, failed = self._ask(
            "source identity",
            lambda: self.client.get_identity_verification_attributes(Identities=[address, domain]),
        )
        if failed:
            return failed
        attributes = answer.get("VerificationAttributes", {})
        for identity in (address, domain):
            if attributes.get(identity, {}).get("VerificationStatus") == "Success":
                return Check("source identity", True, f"{identity} is verified in {self.region}")
        return Check(
            "source identity",
            False,
            f"neither {address} nor {domain} is a verified identity in {self.region}",
            ses_source_fix(self.source, self.region),
        )

    def _check_templates(self) -> list[Check]:
        checks = []
        for label, template in self.templates.items():
            name = f"template {label}"
            answer, failed = self._ask(name, lambda t=template: self.client.get_template(TemplateName=t))  # type: ignore[misc]
            if failed and "TemplateDoesNotExist" in failed.detail:
                failed = Check(
                    name,
                    False,
                    f"template {template!r} does not exist in {self.region}",
                    "run `mailroom templates push`",
                )
            elif not failed and self.subject_tag_required:
                subject = str((answer.get("Template") or {}).get("SubjectPart") or "")
                if not has_subject_tag(subject):
                    failed = Check(
                        name,
                        False,
                        f"template {template!r} in {self.region} has the subject {subject[:80]!r}, which does not "
                        f"start with {SUBJECT_TAG}: MAILROOM_REDIRECT_TO could not mark redirected emails",
                        "run `mailroom templates push` with MAILROOM_REDIRECT_TO set (it adds the prefix)",
                    )
            checks.append(failed or Check(name, True, f"{template!r} exists in {self.region}"))
        return checks

    def _check_config_set(self) -> Check:
        name = "configuration set"
        if not self.config_set:
            return Check(name, True, "none (MAILROOM_SES_CONFIG_SET is empty)")
        _, failed = self._ask(
            name, lambda: self.client.describe_configuration_set(ConfigurationSetName=self.config_set)
        )
        if failed and "ConfigurationSetDoesNotExist" in failed.detail:
            failed = Check(
                name,
                False,
                f"{self.config_set!r} does not exist in {self.region}",
                self.fix("ConfigurationSetDoesNotExist"),
            )
        return failed or Check(name, True, f"{self.config_set!r} exists in {self.region}")

    def _check_account(self) -> list[Check]:
        answer, failed = self._ask("account sending", self.client.get_account_sending_enabled)
        if failed and _not_implemented(failed):
            # An emulator (moto) may not implement GetAccountSendingEnabled; SES always does. A
            # paused account still shows at the first send, as an operator fault.
            sending = Check("account sending", True, "not answered by this endpoint (an SES emulator?)")
        elif failed:
            sending = failed
        elif answer.get("Enabled", False):
            sending = Check("account sending", True, f"enabled in {self.region}")
        else:
            sending = Check(
                "account sending",
                False,
                f"disabled for this account in {self.region}",
                self.fix("AccountSendingPausedException"),
            )
        answer, failed = self._ask("send quota", self.client.get_send_quota)
        if failed:
            return [sending, failed]
        try:
            rate = float(answer["MaxSendRate"])
            sent, limit = float(answer.get("SentLast24Hours", 0)), float(answer.get("Max24HourSend", 0))
        except (KeyError, TypeError, ValueError):
            return [
                sending,
                Check("send quota", False, f"GetSendQuota answered without MaxSendRate: {answer}", UNKNOWN_FIX),
            ]
        self.quota_rate = rate if rate > 0 else None
        return [sending, Check("send quota", True, f"{sent:g} of {limit:g} sent in 24 h, at most {rate:g} emails/s")]


def message_tags(action: Action, ref: str | None) -> list[dict[str, str]]:
    """The destination's ReplacementTags: its action and its token's reference, which SES returns
    in every event it publishes for the message, so that `mailroom events` can tie a bounce
    to its token. Nothing secret: a token_ref names the token but cannot make its link work.
    No reference (the bisection probe's dummy secret): the action only, so that the probe's
    simulator events give no token a status and count in no rate."""
    tags = [{"Name": TAG_ACTION, "Value": action.name}]
    return tags if ref is None else [*tags, {"Name": TAG_TOKEN_REF, "Value": ref}]


def _not_implemented(check: Check) -> bool:
    return "not SES's" in check.detail or any(
        code in check.detail for code in ("InvalidAction", "UnknownOperation", "NotImplemented")
    )


def _encode_form_once(request: Any = None, **_: Any) -> None:
    """URL-encode the query-protocol form body once, not once for signing and again to send.

    botocore keeps the body as a dict and encodes it on every `prepare()`; for 50
    destinations that encoding is the largest CPU cost of a call. The bytes are the same.
    """
    if request is not None and isinstance(request.data, dict):
        request.data = urlencode(request.data, doseq=True)
