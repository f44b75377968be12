"""Errors of failed built-in steps as the run page shows them: the one-line error first, the
frames of generated helpers and of the worker folded away, the full traceback one click away;
log fields as written, not as ``\\u0027`` escapes."""

from __future__ import annotations

import html as entities
import re
from typing import Any

from console.extensions import db
from console.models import StepRun
from console.tracebacks import step_error
from tests.test_stepkinds import (
    http_server,  # noqa: F401 - a fixture
    kind_step,
    start,
)


def step_block(html: str) -> str:
    match = re.search(r'<div class="step-error">(.*?)</div>', html, re.S)
    assert match, html
    return entities.unescape(match.group(1))


def test_a_404_and_a_missing_reference_show_the_error_first(
    app: Any,
    define: Any,
    api: Any,
    work: Any,
    auth: Any,
    client: Any,
    http_server: Any,  # noqa: F811
) -> None:
    http_server.answers = [(404, {"error": "no such thing"})]
    url = http_server.base + "/users/{{ input.id }}"
    define("lookup", [kind_step("fetch", "http", url=url, method="GET")])
    not_found, missing = start(api, "lookup", id=7), start(api, "lookup")
    work()
    auth.login("viewer")

    block = step_block(client.get(f"/runs/{not_found}").get_data(as_text=True))
    first = re.search(r'<p class="step-error-line" role="alert"><strong>([^<]*)</strong>', block)
    assert first and first[1].startswith("RuntimeError: GET http://127.0.0.1:")
    assert "/users/7 answered HTTP 404: {'error': 'no such thing'}" in first[1]
    shown, full = block.split("<details", 1)
    assert 'File "<step fetch>"' in shown and "in run" in shown
    assert "in send_request" not in shown and "runtime.py" not in shown
    assert "<summary>Full traceback</summary>" in full and "in send_request" in full
    assert "workers/runtime.py" in full and "<details open" not in block

    block = step_block(client.get(f"/runs/{missing}").get_data(as_text=True))
    assert "LookupError: {{ input.id }}: there is no 'id' in this run" in block
    shown = block.split("<details", 1)[0]
    assert "in run" in shown and "in resolve" not in shown and "in lookup" not in shown


def test_a_plain_error_is_its_line_alone() -> None:
    error = step_error("the step timed out after 5 s")
    assert (error.headline, error.frames, error.full) == ("the step timed out after 5 s", "", None)


def test_log_fields_show_quotes_as_written(
    app: Any, define: Any, api: Any, work: Any, auth: Any, client: Any
) -> None:
    code = "def run(ctx):\n    ctx.logger.info('said', quote=\"it's <b>fine</b>\", city='Zürich')\n"
    define("talk", [{"name": "say", "code": code}])
    run_id = start(api, "talk")
    work()
    assert db.session.scalar(db.select(StepRun.error)) is None
    auth.login("viewer")
    html = client.get(f"/runs/{run_id}").get_data(as_text=True)
    fields = re.search(r'<code class="fields">([^<]*)</code>', html)
    assert fields and "\\u0027" not in fields[1] and "\\u003c" not in fields[1]
    written = '{"quote": "it\'s <b>fine</b>", "city": "Zürich"}'
    assert entities.unescape(fields[1]) == written and "&lt;b&gt;" in fields[1]
