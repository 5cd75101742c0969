"""An api_call endpoint posting to Slack (an incoming webhook with a layout of the admin's,
chat.postMessage with a token header) fills its template with values a remote sender
chose: the envelope sender, an attachment's name, the Message-ID. Slack reads ``<!channel>``
in them as a mention of everyone and ``<https://evil.test|your bank>`` as a link, so the
values are escaped as the built-in slack kind escapes its text (``&``, ``<``, ``>``);
the template's own text is the admin's and stays as written. Other receivers get the
values as they are: escaped for Slack, a PagerDuty summary would read ``&lt;``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from postwarden_admin_api.webhooks.events import envelope
from postwarden_admin_api.webhooks.payloads import Endpoint, Kind, render

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
DATA = {"sender": '"<!channel>"@evil.test', "message_id": "<https://evil.test|your bank>",
        "recipients": ["<!here>@x.test", "b&c@example.net"],
        "changes": [{"kind": "attachment_stripped", "filename": "<!everyone> invoice.exe"}]}
TEMPLATE = {"text": "<!subteam^S01|mail-ops> rejected {{ data.sender }}: {{ data.message_id }}",
            "recipients": "{{ data.recipients }}", "changes": "{{ data.changes }}",
            "{{ data.sender }}": 1}


def _sent(url: str) -> Any:
    endpoint = Endpoint(id=1, name="chat", url=url, kind=Kind.API_CALL, body_template=TEMPLATE)
    return json.loads(render(endpoint, "evt-1", envelope("message.rejected", WHEN, DATA)).body)


@pytest.mark.parametrize("url", ["https://hooks.slack.com/services/T0/B0/x",
                                 "https://slack.com/api/chat.postMessage",
                                 "https://hooks.slack-gov.com/services/T0/B0/x",
                                 # the root's dot: the same host to DNS, TLS and Slack
                                 "https://hooks.slack.com./services/T0/B0/x",
                                 "https://slack.com.:443/api/chat.postMessage"])
def test_values_sent_to_slack_cannot_mention_or_link(url: str) -> None:
    sent = _sent(url)
    assert sent["text"] == ("<!subteam^S01|mail-ops> rejected \"&lt;!channel&gt;\"@evil.test:"
                            " &lt;https://evil.test|your bank&gt;")
    assert sent["recipients"] == ["&lt;!here&gt;@x.test", "b&amp;c@example.net"]
    assert sent["changes"] == [{"kind": "attachment_stripped",
                                "filename": "&lt;!everyone&gt; invoice.exe"}]
    assert "\"&lt;!channel&gt;\"@evil.test" in sent


@pytest.mark.parametrize("url", ["https://events.pagerduty.com/v2/enqueue",
                                 "https://notslack.com/hook", "https://slack.com.evil.test/x"])
def test_other_receivers_get_the_values_as_they_are(url: str) -> None:
    sent = _sent(url)
    assert sent["text"].endswith("rejected \"<!channel>\"@evil.test: <https://evil.test|your bank>")
    assert sent["recipients"] == DATA["recipients"]
    assert sent["changes"] == DATA["changes"]
