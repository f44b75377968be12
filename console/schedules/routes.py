"""Routes of the Schedules tab (issue 6)."""
