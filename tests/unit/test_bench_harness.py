"""The benchmark harness's own parts: the fake SES speaks enough SES for boto3, and the
statistics helpers compute what BENCHMARKS.md says they do. No timing is asserted."""

from __future__ import annotations

import boto3
import pytest

from bench.common import percentile
from bench.fake_ses import serve
from bench.sender_rate import sustained_rate


@pytest.fixture
def fake_ses():
    server, stats = serve(port=0, delay=0.0, max_send_rate=5000.0)
    client = boto3.client(
        "ses",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    try:
        yield client, stats
    finally:
        server.shutdown()
        server.server_close()


def test_fake_ses_answers_success_and_a_message_id_per_destination(fake_ses):
    client, stats = fake_ses
    answer = client.send_bulk_templated_email(
        Source="noreply@example.com",
        Template="activationv1",
        DefaultTemplateData="{}",
        Destinations=[
            {"Destination": {"ToAddresses": [f"u{i}@example.com"]}, "ReplacementTemplateData": "{}"} for i in range(3)
        ],
    )
    assert [s["Status"] for s in answer["Status"]] == ["Success"] * 3
    assert len({s["MessageId"] for s in answer["Status"]}) == 3
    assert stats.destinations == 3
    assert stats.addresses == {"u0@example.com", "u1@example.com", "u2@example.com"}


def test_fake_ses_reports_its_send_quota(fake_ses):
    client, _ = fake_ses
    assert client.get_send_quota()["MaxSendRate"] == 5000.0


def test_fake_ses_refuses_actions_it_does_not_implement(fake_ses):
    client, stats = fake_ses
    with pytest.raises(client.exceptions.ClientError) as caught:
        client.list_identities()
    assert caught.value.response["Error"]["Code"] == "InvalidAction"
    assert stats.other_actions == {"ListIdentities": 1}


def test_sustained_rate_counts_between_10_and_90_percent_of_the_total():
    # a slow start (10 emails in 4 s), then 10 emails per second: 200 in all
    calls = [[0.0, 5], [4.0, 5]] + [[5.0 + i, 10] for i in range(19)]
    assert sustained_rate(calls, 200) == pytest.approx(10.0)


def test_percentile_is_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
