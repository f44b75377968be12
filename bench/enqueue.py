"""``python -m bench.enqueue WORKFLOW COUNT``: start COUNT runs of a published workflow the
product's way (``console.runs.start_run``: the run's row, then its job), in a process of its
own, so that the benchmark's process can do unmeasured work (seeding (d)) while the live
stack's worker drains them. Settings come from the environment ``BenchEnv`` set.
"""

from __future__ import annotations

import sys

from sqlalchemy import select

import console.runs as domain
from console import create_app
from console.extensions import db
from console.models import Workflow


def main(argv: list[str]) -> int:
    name, count = argv[0], int(argv[1])
    with create_app().app_context():
        workflow = db.session.scalars(select(Workflow).where(Workflow.name == name)).one()
        for _ in range(count):
            domain.start_run(workflow, {}, trigger="bench")
        db.session.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
