"""Runs: their ids, their event logs and the local index of them."""
from .events import TERMINAL_STATES, EventLog, read_events
from .ids import new_run_id
from .index import RunIndex, RunRecord

__all__ = ["TERMINAL_STATES", "EventLog", "read_events", "new_run_id", "RunIndex", "RunRecord"]
