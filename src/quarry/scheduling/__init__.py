"""The global driver: schedules, monitors, the lease reaper (issue 6)."""
