"""The end of a replay: its summary (a line on stdout, optionally a JSON file) and its exit status.

Exit statuses (documented in the README, "Replay"):

- 0: every partition reached its end (end offset seen at start, or --until);
- 8 (``REPLAY_INCOMPLETE``): stopped by SIGTERM/SIGINT before that;
- the service's statuses otherwise (1 bad flags or configuration, 2 workers
  kept dying, 3 dead letters not delivered, 4 Kafka unreachable at start,
  5 database, 6 metrics address).

The JSON file is written whenever the replay started (also when it failed),
with ``complete`` and ``exit_status``, so an automation reads one file; a
file left by an earlier run is removed first, so a replay that fails before
it starts (exit status 1 or 4) leaves no file at all.
"""

from __future__ import annotations

import json
import os
from typing import Any

from writer import exit_codes
from writer.replay import ReplayPlan
from writer.replay_options import ReplayOptions


def extend(base: dict[str, Any], totals: dict[str, float], options: ReplayOptions | None, plan: ReplayPlan | None,
           exit_status: int) -> dict[str, Any]:
    """The service's summary (``supervisor.summary``) plus what the replay asked for and how it ended."""
    result = dict(base)
    result["skipped_outside_window"] = int(totals.get("replay_skipped_outside_window", 0))
    result["complete"] = exit_status == exit_codes.OK
    result["exit_status"] = exit_status
    options = options or ReplayOptions()
    result["dry_run"] = options.dry_run
    result["since"] = options.since.isoformat() if options.since else None
    result["until"] = options.until.isoformat() if options.until else None
    result["partitions"] = sorted(plan.ends) if plan is not None else None
    result["planned"] = plan.planned if plan is not None else None
    if options.dry_run:
        # A real replay's duplicates are the rows already stored plus the keys repeated within the replay.
        result["would_store"] = result.pop("stored")
        result["already_stored"] = int(totals.get("replay_dry_run_already_stored", 0))
        result["repeated"] = result.pop("duplicates") - result["already_stored"]
    return result


def _reasons(result: dict[str, Any]) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(result["rejected_by_reason"].items()))
    return f" ({reasons})" if reasons else ""


def format_line(result: dict[str, Any]) -> str:
    """One line for stdout; a finished real replay keeps the line the service always printed, window counts added."""
    from writer.supervisor import format_summary

    if result["dry_run"]:
        text = (f"messages {result['messages']}, would store {result['would_store']}, "
                f"already stored {result['already_stored']}, repeated {result['repeated']}, "
                f"would reject {result['rejected']}{_reasons(result)}, "
                f"{result['seconds']:.2f} s, {result['messages_per_second']:.0f} messages/s")
        head = "dry run finished" if result["complete"] else f"dry run stopped (exit status {result['exit_status']})"
    else:
        text = format_summary(result)
        head = "replay finished" if result["complete"] else f"replay stopped (exit status {result['exit_status']})"
    if result["since"] or result["until"]:
        text += f", skipped {result['skipped_outside_window']} outside the window"
    if result["dry_run"]:
        text += "; nothing written, no offset committed"
    return f"{head}: {text}"


def discard_previous(path: str) -> None:
    """Remove an earlier run's summary, so a replay that fails before it ends never leaves one to be read."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        pass  # options_from_args reports it


def write_json(path: str, result: dict[str, Any]) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as out:
        json.dump(result, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(temporary, path)
