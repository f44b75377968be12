"""The durable record: workflows and their immutable versions, runs, step checkpoints,
task results, log lines, users and API tokens, secrets.

Run and step status only change through the functions in ``console.runs``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db
from .ids import new_id
from .timeutil import UTCDateTime, utcnow

RUN_STATUSES = (
    "pending",
    "running",
    "sleeping",
    "suspended",
    "paused",
    "completed",
    "failed",
    "canceled",
)
TERMINAL = frozenset({"completed", "failed", "canceled"})
ACTIVE = frozenset(set(RUN_STATUSES) - TERMINAL)
STEP_STATUSES = (
    "pending",
    "running",
    "sleeping",
    "suspended",
    "completed",
    "failed",
    "canceled",
    "skipped",
)
ROLES = ("viewer", "operator", "editor", "admin")

Json = JSON(none_as_null=True)


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Part of the id kept in the session cookie: raising it (logout, a password change or
    # reset, deactivation) ends every session made before, a saved copy of the cookie too.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def has_role(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active


class ApiToken(db.Model):  # type: ignore[name-defined]
    """An API token; only its SHA-256 is stored, so a leaked database leaks no token."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(16)


class Workflow(db.Model):  # type: ignore[name-defined]
    __tablename__ = "workflows"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    # Rotating this nonce changes the webhook URL (its secret is derived from it). Made with
    # the workflow, so that reading the URL never writes.
    webhook_nonce: Mapped[str | None] = mapped_column(String(64), default=new_nonce)
    # The unpublished definition being edited (``"publish": false``), if any.
    draft: Mapped[dict | None] = mapped_column(Json)
    # Incremented by every draft save: a save based on an older revision is refused, so an
    # edit by someone else in between is never overwritten silently.
    draft_revision: Mapped[int] = mapped_column(default=0)
    draft_updated_by: Mapped[str | None] = mapped_column(String(254))
    draft_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The operations settings of the latest published version (``concurrency``,
    # ``retention_days``, ``notify``), kept here so that a worker's claim, the pruner and a
    # failure read them without parsing a definition.
    concurrency: Mapped[int | None]
    retention_days: Mapped[int | None]
    notify: Mapped[dict | None] = mapped_column(Json)

    versions: Mapped[list[WorkflowVersion]] = relationship(
        back_populates="workflow", order_by="WorkflowVersion.number"
    )

    @property
    def live_versions(self) -> list[WorkflowVersion]:
        return [v for v in self.versions if v.deleted_at is None]

    @property
    def latest_version(self) -> WorkflowVersion | None:
        live = self.live_versions
        return live[-1] if live else None


class WorkflowVersion(db.Model):  # type: ignore[name-defined]
    """A published definition. Never changed after publishing; deletion only hides it."""

    __tablename__ = "workflow_versions"
    __table_args__ = (
        UniqueConstraint("workflow_id", "label"),
        UniqueConstraint("workflow_id", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    number: Mapped[int]
    label: Mapped[str] = mapped_column(String(40))
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    definition_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by: Mapped[str | None] = mapped_column(String(254))
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    workflow: Mapped[Workflow] = relationship(back_populates="versions")

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.definition.get("steps", []))


class Run(db.Model):  # type: ignore[name-defined]
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("workflow_id", "idempotency_key"),
        Index("ix_runs_status_id", "status", "id"),
        Index("ix_runs_workflow_id_id", "workflow_id", "id"),
        Index("ix_runs_status_wake_at", "status", "wake_at"),
        Index("ix_runs_status_lease", "status", "lease_expires_at"),
        # The Tasks page: a workflow's runs by status, newest first, and their counts.
        Index("ix_runs_workflow_status_id", "workflow_id", "status", "id"),
        # Retention: finished runs by age.
        Index("ix_runs_finished_at", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("workflow_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    trigger: Mapped[str] = mapped_column(String(120), default="manual")
    input: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    output: Mapped[Any] = mapped_column(Json, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    compute_ms: Mapped[int] = mapped_column(default=0)
    # Index of the step to execute next; equal to the number of steps once all are done.
    current_step: Mapped[int] = mapped_column(default=0)
    step_count: Mapped[int] = mapped_column(default=0)
    # The status a paused run had, so that resume can return it where it would be now.
    paused_from: Mapped[str | None] = mapped_column(String(16))
    # Which worker holds the run and until when; the owner string is a fencing token.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a sleeping run's timer is due.
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    job_id: Mapped[str | None] = mapped_column(String(80))
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Takeovers of the run after its worker stopped (its lease expired), and the last one's
    # time: steps completed before it were replayed from their checkpoints, not executed.
    replays: Mapped[int] = mapped_column(default=0)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Takeovers since the current step last recorded anything: each is a worker that died
    # while the step executed; past MAX_STEP_RECOVERIES the run fails instead of a new one.
    recoveries: Mapped[int] = mapped_column(default=0, server_default="0")
    # Lineage: the run this one re-runs (``POST /api/runs/<id>/rerun``), and the run whose
    # journal it was recovered from (an id that may belong to another console).
    rerun_of: Mapped[str | None] = mapped_column(String(26), index=True)
    recovered_from: Mapped[str | None] = mapped_column(String(64))

    workflow: Mapped[Workflow] = relationship()
    version: Mapped[WorkflowVersion] = relationship()
    steps: Mapped[list[StepRun]] = relationship(
        back_populates="run", order_by="StepRun.position", cascade="all, delete-orphan"
    )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


class StepRun(db.Model):  # type: ignore[name-defined]
    """The checkpoint of one step of one run: at most one row per (run, step)."""

    __tablename__ = "step_runs"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    position: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    output: Mapped[Any] = mapped_column(Json, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    runs: Mapped[int] = mapped_column(default=1)
    resume_data: Mapped[Any] = mapped_column(Json, nullable=True)
    timed_out: Mapped[bool] = mapped_column(default=False)
    # Why a sleeping step sleeps: "retry" (backoff), "rerun" (ctx.flow.rerun) or "wait".
    sleep_reason: Mapped[str | None] = mapped_column(String(10))
    # ctx.run.context and ctx.run.callback_request for the step's next execution.
    context: Mapped[Any] = mapped_column(Json, nullable=True)
    callback_request: Mapped[Any] = mapped_column(Json, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None]
    # Taken from an earlier run (a re-run's plan or a journal) instead of executed, and the run
    # where it was executed.
    reused: Mapped[bool] = mapped_column(default=False, server_default=false())
    reused_from: Mapped[str | None] = mapped_column(String(64))
    # The step's content (code, kind, config, settings) when it executed, and what it read:
    # ``{"input": [fields] or "*", "steps": [names]}``; a smart re-run decides by them.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    reads: Mapped[Any] = mapped_column(Json, nullable=True)
    # An ``execute_when_recovering`` step of a recovered or re-run run: its next execution sees
    # ``ctx.run.recovered`` and the output recorded before.
    recovered: Mapped[bool] = mapped_column(default=False, server_default=false())
    previous_output: Mapped[Any] = mapped_column(Json, nullable=True)

    run: Mapped[Run] = relationship(back_populates="steps")


class TaskResult(db.Model):  # type: ignore[name-defined]
    """A ``ctx.task`` result: at most one row per (run, step, key)."""

    __tablename__ = "task_results"
    __table_args__ = (UniqueConstraint("run_id", "step_name", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_name: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(String(255))
    result: Mapped[Any] = mapped_column(Json, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunEvent(db.Model):  # type: ignore[name-defined]
    """What a run's journal needs that no other row keeps: each start of a step execution that
    later rows overwrite (failed attempts, re-runs, waits, suspends), failed attempts' errors,
    rerun requests, and pauses and unpauses. Written in the transaction of what it records."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    type: Mapped[str] = mapped_column(String(20))
    step_name: Mapped[str | None] = mapped_column(String(63))
    runs: Mapped[int | None]
    data: Mapped[Any] = mapped_column(Json, nullable=True)


class LogLine(db.Model):  # type: ignore[name-defined]
    __tablename__ = "log_lines"
    __table_args__ = (Index("ix_log_lines_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_name: Mapped[str | None] = mapped_column(String(63))
    attempt: Mapped[int] = mapped_column(default=1)
    level: Mapped[str] = mapped_column(String(10), default="info")
    message: Mapped[str] = mapped_column(Text)
    fields: Mapped[dict | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Waitpoint(db.Model):  # type: ignore[name-defined]
    """What a step execution waits on: its resume and cancel links and their outcome.

    Created when the step calls ``ctx.flow.suspend`` or ``ctx.flow.rerun`` (committed at once,
    so a link clicked before the step ends is kept). ``state`` changes once, from ``open``.
    """

    __tablename__ = "waitpoints"
    __table_args__ = (UniqueConstraint("run_id", "step_name", "runs", "kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_name: Mapped[str] = mapped_column(String(63))
    runs: Mapped[int]
    kind: Mapped[str] = mapped_column(String(10))
    resume_hash: Mapped[str] = mapped_column(String(64), unique=True)
    cancel_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # open, resumed, canceled, timed_out, or closed (over with no outcome)
    state: Mapped[str] = mapped_column(String(10), default="open")
    payload: Mapped[Any] = mapped_column(Json, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(db.Model):  # type: ignore[name-defined]
    """An email a step sent (or tried to): one row per step execution and call."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("run_id", "step_name", "runs", "seq"),
        Index("ix_outbox_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_name: Mapped[str] = mapped_column(String(63))
    runs: Mapped[int]
    seq: Mapped[int]
    recipients: Mapped[list[str]] = mapped_column(Json)
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    # sending, sent, kept (no mail server configured) or failed
    status: Mapped[str] = mapped_column(String(10), default="sending")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Schedule(db.Model):  # type: ignore[name-defined]
    """A cron schedule of a workflow. The database is the truth; the scheduler process keeps
    one rq-scheduler job per enabled schedule, under an id derived from this row."""

    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("workflow_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # A JSON input, or (when input_code is set) a snippet defining ``input(now)``.
    input: Mapped[Any] = mapped_column(Json, nullable=True)
    input_code: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    # What to do about fires missed while no scheduler ran: skip, latest or all.
    missed: Mapped[str] = mapped_column(String(8), default="latest")
    # A fire while the schedule's previous run is not finished: allow (start another) or skip.
    overlap: Mapped[str] = mapped_column(String(8), default="allow", server_default="allow")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every fire time up to this one is settled (handled: started, missed, skipped or failed;
    # or before the schedule became active), in UTC. Later ones without a fire are missed.
    last_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The fire time registered with rq-scheduler; NULL while the schedule is not active, so
    # that its next activation starts afresh instead of catching up on the pause.
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    workflow: Mapped[Workflow] = relationship()


class ScheduleFire(db.Model):  # type: ignore[name-defined]
    """One fire time of one schedule: at most one row, hence at most one run, per pair."""

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "fire_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # started, missed (started late, after a scheduler outage), skipped or failed
    status: Mapped[str] = mapped_column(String(10))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    # Why a fire was late or not started (the missed-fire policy's decision).
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BulkAction(db.Model):  # type: ignore[name-defined]
    """A bulk pause, resume or cancel too large for one request (``console.runs.bulk``): a worker
    applies it batch by batch, each run through its own transition, and records its progress
    here for the page that started it."""

    __tablename__ = "bulk_actions"

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    action: Mapped[str] = mapped_column(String(10))
    # The runs it covers (``runs.RunFilter``'s fields) and how many matched when confirmed.
    filter: Mapped[dict[str, Any]] = mapped_column(Json)
    total: Mapped[int] = mapped_column(default=0)
    # queued, running, completed or failed; each change one conditional UPDATE
    status: Mapped[str] = mapped_column(String(10), default="queued")
    changed: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StepTest(db.Model):  # type: ignore[name-defined]
    """One "Test this step" from the editor: executed by a worker from the test queue, never
    by the web process. Suspend, rerun and waits are reported, not performed."""

    __tablename__ = "step_tests"
    __table_args__ = (Index("ix_step_tests_workflow_step", "workflow_id", "step_name", "id"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    step_name: Mapped[str] = mapped_column(String(63))
    # queued, running, completed or failed
    status: Mapped[str] = mapped_column(String(10), default="queued")
    step: Mapped[dict[str, Any]] = mapped_column(Json)
    input: Mapped[Any] = mapped_column(Json, nullable=True)
    steps: Mapped[Any] = mapped_column(Json, nullable=True)
    output: Mapped[Any] = mapped_column(Json, nullable=True)
    logs: Mapped[Any] = mapped_column(Json, nullable=True)
    notes: Mapped[Any] = mapped_column(Json, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None]


class Secret(db.Model):  # type: ignore[name-defined]
    """A credential for steps (``console.secrets``): ``value`` is its Fernet token, never the
    value itself."""

    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(254))
