"""Timers, cron and file monitors: pure schedules that take a clock and return the signals due."""
