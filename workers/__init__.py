"""RQ jobs, the step runtime, and the worker and scheduler processes."""
