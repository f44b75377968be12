"""The Outbox page as an operator sees it. Messages are written here directly: in the product
the engine writes them when a step calls ``ctx.send_email``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from console import runs as domain
from console.extensions import db
from console.models import OutboxMessage
from console.timeutil import utcnow

APPROVE = "def run(ctx):\n    return 1"


@pytest.fixture
def run_id(define: Any) -> str:
    workflow = define("approvals", [("ask", APPROVE)])
    run, _ = domain.start_run(workflow, {})
    return str(run.id)


def add_message(run_id: str, seq: int, **fields: Any) -> OutboxMessage:
    values: dict[str, Any] = {
        "run_id": run_id,
        "step_name": "ask",
        "runs": 1,
        "seq": seq,
        "recipients": ["boss@example.com"],
        "subject": f"Message {seq}",
        "text": f"Body of message {seq}",
        "status": "kept",
        "created_at": utcnow() - timedelta(minutes=1000 - seq),
    }
    values.update(fields)
    message = OutboxMessage(**values)
    db.session.add(message)
    db.session.commit()
    return message


def operator_page(auth: Any, path: str = "/outbox") -> str:
    auth.login("operator", "op@example.com")
    response = auth.client.get(path)
    assert response.status_code == 200
    return str(response.get_data(as_text=True))


def subjects(html: str) -> list[str]:
    return re.findall(r'<h2 class="mail-subject">([^<]*)</h2>', html)


def test_the_outbox_lists_messages_newest_first(app, client, auth, run_id):
    add_message(
        run_id,
        1,
        subject="Approve the refund?",
        recipients=["boss@example.com", "cfo@example.com"],
        status="sent",
    )
    add_message(
        run_id, 2, subject="Delivery failed", status="failed", error="SMTPRecipientsRefused"
    )
    html = operator_page(auth)
    assert subjects(html) == ["Delivery failed", "Approve the refund?"]
    assert "boss@example.com, cfo@example.com" in html
    assert f'href="/runs/{run_id}"' in html
    assert "approvals" in html and "<code>ask</code>" in html
    assert '<span class="badge status-sent">sent</span>' in html
    assert '<span class="badge status-failed">failed</span>' in html
    assert "SMTPRecipientsRefused" in html
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z">', html)
    assert 'aria-current="page">Outbox</a>' in html


def test_links_in_a_body_are_clickable(app, client, auth, run_id):
    text = (
        "Approve: http://console.test/flow/resume/abc123\n"
        "Reject: http://console.test/flow/cancel/def456\n"
        "Docs (https://docs.example.com/guide?a=1&b=2). Not a link: ftp://files.example.com"
    )
    add_message(run_id, 1, text=text)
    html = operator_page(auth)
    for url in ("http://console.test/flow/resume/abc123", "http://console.test/flow/cancel/def456"):
        assert f'<a href="{url}" rel="noopener noreferrer">{url}</a>' in html
    # The closing parenthesis and full stop end the sentence, not the link.
    docs = "https://docs.example.com/guide?a=1&amp;b=2"
    assert f'<a href="{docs}" rel="noopener noreferrer">{docs}</a>). Not a link' in html
    assert 'href="ftp:' not in html


def test_html_in_messages_is_escaped(app, client, auth, run_id):
    add_message(
        run_id,
        1,
        subject="<b>Bold</b> subject",
        recipients=["<x@example.com>"],
        text='<script>alert(1)</script> & see https://evil.example/"onmouseover="alert(2)',
        html="<p>Hi</p>",
    )
    html = operator_page(auth)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in html
    assert "<b>Bold</b>" not in html and "&lt;b&gt;Bold&lt;/b&gt; subject" in html
    assert "&lt;x@example.com&gt;" in html
    assert 'href="https://evil.example/"' in html and 'onmouseover="alert' not in html
    assert "Also sent with an HTML version" in html


def test_the_empty_outbox_says_what_it_is(app, client, auth):
    html = operator_page(auth)
    assert "No emails yet." in html
    assert "ctx.send_email" in html and "MAIL_SERVER" in html
    assert "Older messages" not in html


def test_the_outbox_needs_login(app, client):
    response = client.get("/outbox")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/outbox")


def test_viewers_may_not_read_the_outbox(app, client, auth):
    auth.login("viewer")
    response = client.get("/outbox")
    assert response.status_code == 403
    assert "operator role" in response.get_data(as_text=True)
    assert ">Outbox</a>" not in client.get("/tasks").get_data(as_text=True)


def test_operators_find_the_outbox_in_the_header(app, client, auth):
    auth.login("operator", "op@example.com")
    assert 'href="/outbox">Outbox</a>' in client.get("/tasks").get_data(as_text=True)


def test_the_outbox_pages_by_fifty(app, client, auth, run_id):
    for seq in range(1, 121):
        add_message(run_id, seq)
    first = operator_page(auth)
    assert subjects(first) == [f"Message {n}" for n in range(120, 70, -1)]
    assert "Newest messages" not in first
    older = re.search(r'href="(/outbox\?before=\d+)">Older messages', first)
    assert older

    second = client.get(older.group(1)).get_data(as_text=True)
    assert subjects(second) == [f"Message {n}" for n in range(70, 20, -1)]
    assert 'href="/outbox">Newest messages' in second
    older = re.search(r'href="(/outbox\?before=\d+)">Older messages', second)
    assert older

    third = client.get(older.group(1)).get_data(as_text=True)
    assert subjects(third) == [f"Message {n}" for n in range(20, 0, -1)]
    assert "Older messages" not in third

    last_id = db.session.scalar(db.select(db.func.min(OutboxMessage.id)))
    assert "No older messages." in client.get(f"/outbox?before={last_id}").get_data(as_text=True)
    assert client.get("/outbox?before=abc").status_code == 400
