"""Print a pip constraints file pinning every dependency pyproject.toml declares to its lower bound.

``name>=X`` becomes ``name==X`` (runtime dependencies and every optional group); the project's own
extras (``ccx-notification-writer[...]``) are skipped. A requirement without a lower bound is an error:
the claim "the lower bounds are tested" needs one for each.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# name[extras]>=X, optionally followed by an upper bound such as ,<3
REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*(?:,\s*<\s*[^,;\s]+\s*)?$"
)


def lower_bounds(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for group in project.get("optional-dependencies", {}).values():
        requirements += group
    pins: dict[str, str] = {}
    for requirement in requirements:
        if requirement.startswith(project["name"] + "["):
            continue
        match = REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"pyproject.toml: {requirement!r} has no lower bound of the form name>=version")
        pins[match.group(1).lower()] = match.group(2)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    print("\n".join(lower_bounds(path)))
