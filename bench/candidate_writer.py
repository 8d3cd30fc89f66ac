"""ccx-notification-writer with the candidate decode (bench/candidate_decode.py) in every process; measurement only.

    PYTHONPATH=<repository> python -m bench.candidate_writer --replay ...  (``bench.e2e --decoder candidate``)

Same arguments as ``ccx-notification-writer``. The service itself never imports bench/: this module swaps
``writer.message.parse_message`` for the candidate before any other writer module is imported, so every
``from writer.message import parse_message`` binds the candidate. The workers are spawned processes, and a
spawned process re-imports its parent's main module (this one, as ``__mp_main__``) before it unpickles its
target (Python's multiprocessing "safe importing of main module"), so they get the swap too.
"""

from __future__ import annotations

import sys

from bench import candidate_decode
from writer import message

message.parse_message = candidate_decode.parse_message
# Imported only after the swap, on purpose (see the module docstring).
from writer.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
