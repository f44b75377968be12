"""The run state machine (docs/runs.md): this package is still the only place a run's or a step's
status changes.

Every transition is one conditional UPDATE (``... WHERE status IN (allowed)``), so concurrent
actions resolve to one winner. Worker-side transitions are additionally fenced by the lease
owner: a worker that lost its lease (it was presumed dead and another took over) can record
nothing.

- ``start``: the workflow and version a request names, input checks, starting a run.
- ``actions``: pause, resume, cancel (the one ``ACTIONS`` table), Approve/Reject.
- ``checkpoints``: the worker's claim, lease and fenced records, and the replay reads.
- ``waits``: waitpoints (suspend, rerun, ``ctx.wait``) and what their links do.
- ``bulk``: actions on many runs, and those a worker applies in the background.
- ``journal``: a run's journal; ``recover``: a new run that continues from one.
- ``plan``: what a re-run reuses and executes, and why; ``rerun``: the re-run itself.
- ``slots``: concurrency limits: who holds a slot, who may start next; ``notify``: emails.

Callers import from here (``from console import runs``); the modules import each other in
that order, ``waits`` reaching back to ``actions`` only for a cancel link.
"""

from ..definitions import delete_version
from .actions import (
    ACTIONS,
    PAUSABLE,
    Decision,
    allowed_actions,
    cancel_run,
    decide_run,
    pause_run,
    resume_run,
    run_action,
)
from .bulk import BULK_BATCH, BULK_FROM, BulkResult, RunFilter, bulk_act, id_bound
from .checkpoints import (
    CANCELED_WHILE_RUNNING,
    REPLAY_READS,
    Claim,
    Replay,
    StepOutcome,
    claim_run,
    continue_after_boundary,
    fail_recovered_step,
    finish_run,
    hand_back_run,
    load_replay,
    output_error,
    record_email,
    record_step_canceled,
    record_step_completed,
    record_step_failed,
    record_task,
    recovery_error,
    release_run,
    renew_lease,
    rerun_callback,
    take_run,
    too_many_recoveries,
)
from .journal import FORMAT as JOURNAL_FORMAT
from .journal import WAIT_PREFIX, build_journal
from .plan import Plan, step_hash
from .recover import Recovery, plan_recovery, recover_journal
from .rerun import RerunRequest, rerun_plan, rerun_run, reruns_of
from .slots import Slots, may_start, start_waiting, waiting_for, waiting_runs
from .start import (
    IDEMPOTENCY_WINDOW,
    MAX_IDEMPOTENCY_KEY,
    get_run,
    get_version,
    get_workflow,
    input_problems,
    new_run,
    schema_problems,
    start_run,
)
from .waits import (
    LINK_STATES,
    LinkAnswer,
    act_on_link,
    act_on_waitpoint,
    apply_waitpoint,
    find_waitpoint,
    open_links,
    open_waitpoint,
    record_step_rerun,
    record_step_suspended,
    record_step_waiting,
    settle_waits,
)

__all__ = [
    "ACTIONS",
    "BULK_BATCH",
    "BULK_FROM",
    "CANCELED_WHILE_RUNNING",
    "IDEMPOTENCY_WINDOW",
    "JOURNAL_FORMAT",
    "LINK_STATES",
    "MAX_IDEMPOTENCY_KEY",
    "PAUSABLE",
    "REPLAY_READS",
    "WAIT_PREFIX",
    "BulkResult",
    "Claim",
    "Decision",
    "LinkAnswer",
    "Plan",
    "Recovery",
    "Replay",
    "RerunRequest",
    "Slots",
    "RunFilter",
    "StepOutcome",
    "act_on_link",
    "act_on_waitpoint",
    "allowed_actions",
    "apply_waitpoint",
    "build_journal",
    "bulk_act",
    "cancel_run",
    "claim_run",
    "continue_after_boundary",
    "decide_run",
    "delete_version",
    "fail_recovered_step",
    "find_waitpoint",
    "finish_run",
    "get_run",
    "get_version",
    "get_workflow",
    "hand_back_run",
    "id_bound",
    "input_problems",
    "load_replay",
    "may_start",
    "new_run",
    "open_links",
    "open_waitpoint",
    "output_error",
    "pause_run",
    "plan_recovery",
    "record_email",
    "record_step_canceled",
    "record_step_completed",
    "record_step_failed",
    "record_step_rerun",
    "record_step_suspended",
    "record_step_waiting",
    "record_task",
    "recover_journal",
    "recovery_error",
    "release_run",
    "renew_lease",
    "rerun_callback",
    "rerun_plan",
    "rerun_run",
    "reruns_of",
    "resume_run",
    "run_action",
    "schema_problems",
    "settle_waits",
    "start_run",
    "start_waiting",
    "step_hash",
    "take_run",
    "too_many_recoveries",
    "waiting_for",
    "waiting_runs",
]
