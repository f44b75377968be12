"""One execution of one step as the engine sees it: what the step's ``ctx`` asks of the
engine (suspend, rerun, durable waits, email), each recorded under the run's claim."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from console import runs as domain
from console.extensions import db
from console.links import Links, links_for
from console.mail import normalise_recipients, send_recorded
from console.timeutil import utcnow

from .runtime import ClaimLost, WaitRequested


class Execution:
    """One execution of one step: what its ``ctx`` asks of the engine (suspend, rerun,
    durable waits, email), each recorded under the run's claim."""

    WAIT_PREFIX = "__wait__/"

    def __init__(
        self,
        claim: domain.Claim,
        step: str,
        runs: int,
        tasks: dict[str, Any],
        record: Any,
        sent: set[tuple[Any, ...]],
    ) -> None:
        self.claim, self.step, self.runs = claim, step, runs
        self.tasks, self.record, self.sent = tasks, record, sent
        self.suspend_waitpoint: str | None = None
        self.rerun_request: tuple[str, float, Any] | None = None
        self.opened = False
        self.email_seq = 0

    def _waitpoint(self, kind: str, expires_at: Any) -> str:
        waitpoint = domain.open_waitpoint(self.claim, self.step, self.runs, kind, expires_at)
        if waitpoint is None:
            raise ClaimLost()
        self.opened = True
        return waitpoint

    def suspend(self, seconds: float) -> Links:
        if self.rerun_request is not None:
            raise RuntimeError("a step cannot both suspend and rerun")
        expires = utcnow() + timedelta(seconds=seconds)
        self.suspend_waitpoint = self._waitpoint("suspend", expires)
        return self._links(self.suspend_waitpoint)

    def rerun(self, delay: float, context: Any, max_retries: int) -> Links:
        if self.suspend_waitpoint is not None:
            raise RuntimeError("a step cannot both suspend and rerun")
        waitpoint = self._waitpoint("rerun", None)
        # runs - 1 reruns so far; past max_retries the run proceeds with this output.
        self.rerun_request = (waitpoint, delay, context) if self.runs - 1 < max_retries else None
        return self._links(waitpoint)

    @staticmethod
    def _links(waitpoint: str) -> Links:
        links = links_for(waitpoint)
        db.session.commit()  # end the read: nothing is held while the step goes on
        return links

    def wait(self, key: str, seconds: float) -> None:
        record_key = self.WAIT_PREFIX + key
        recorded = self.tasks.get(record_key)
        if recorded is None:
            until = utcnow() + timedelta(seconds=seconds)
            self.record(record_key, {"until": until.isoformat()})
            self.tasks[record_key] = {"until": until.isoformat()}
            raise WaitRequested(until)
        until = datetime.fromisoformat(recorded["until"])
        if until > utcnow():
            raise WaitRequested(until)

    def send_email(self, to: Any, subject: str, text: str, html: str | None) -> None:
        seq, self.email_seq = self.email_seq, self.email_seq + 1
        if (self.step, self.runs, seq) in self.sent:
            return  # sent by an earlier pass of this execution (a replay or ctx.wait)
        recipients = normalise_recipients(to)
        message_id = domain.record_email(
            self.claim, self.step, self.runs, seq, recipients, subject, text, html
        )
        if message_id is None:
            raise ClaimLost()
        self.sent.add((self.step, self.runs, seq))
        send_recorded(message_id)
