"""The environment a test or a benchmark starts the service in. No pytest here: the benchmarks use it too."""

from __future__ import annotations

import os
from collections.abc import Mapping

SETTINGS_PREFIX = "CCX_NOTIFICATION_WRITER"  # every variable of the service, CCX_NOTIFICATION_WRITER__SECTION__KEY
CLOWDER_VARIABLE = "ACG_CONFIG"


def without_writer_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (by default this process's) without any setting of the service: no CCX_NOTIFICATION_WRITER*
    variable and no ACG_CONFIG, so that a developer's shell never changes what a test or a benchmark runs."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items()
            if not name.startswith(SETTINGS_PREFIX) and name != CLOWDER_VARIABLE}
