"""A child process for signal tests: the supervisor's own stop path, run once per line read on stdin.

Each run is ``supervisor.run_service`` (its signal handlers, ``Supervisor.request_stop``, the main loop and its
wait, the stop of the workers and of the HTTP server) without workers, database or Kafka: those parts are
replaced by nothing. The loop turns without pause, so the stop mechanism is used as often as it can be.
Prints ``ready`` once a run's loop turns, then ``stopped STATUS`` when run_service returns; SIGUSR1 writes
every thread's stack to stderr.

    python -m tests.harness.supervisor_signals
"""

from __future__ import annotations

import faulthandler
import signal
import sys

from writer import config as config_module
from writer import supervisor as supervisor_module
from writer.supervisor import Supervisor, run_service


class _NoProbe:
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def main() -> None:
    env = {f"{config_module.ENV_PREFIX}{key}": value for key, value in {
        "PROCESSING__WORKERS": "1", "METRICS__ADDRESS": "127.0.0.1:0", "BROKER__TOPIC": "t",
    }.items()}
    config = config_module.load(env)
    supervisor_module.LOOP_INTERVAL_S = 0.0
    supervisor_module.preflight_database = lambda config: None
    turned = [False]

    def first_turn_says_ready(self: Supervisor) -> bool:
        if not turned[0]:
            turned[0] = True
            print("ready", flush=True)
        return True

    Supervisor._reap = first_turn_says_ready  # type: ignore[method-assign]
    Supervisor._start_due_workers = lambda self: None  # type: ignore[method-assign]
    Supervisor._new_database_probe = lambda self: _NoProbe()  # type: ignore[method-assign]
    faulthandler.register(signal.SIGUSR1)  # the test asks for the stacks of a run that does not stop
    # Outside a run, a signal sent late for the run before is ignored (run_service restores these).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for _ in sys.stdin:
        turned[0] = False
        status = run_service(config)
        print(f"stopped {status}", flush=True)


if __name__ == "__main__":
    main()
