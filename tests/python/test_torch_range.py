"""The supported torch range that pyproject.toml declares, against the pinned development torch.

pip accepts any torch in the range for `pip install --no-build-isolation .`, while the
development set-up pins one exact torch (constraints.txt, scripts/setup.sh): the pin must stay
inside the declared range, or the tests would vouch for a torch that users are told is not
supported. (The suite itself may run on any torch of the range.)
"""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def _declared_torch() -> Requirement:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    found = [r for r in reqs if r.name == "torch"]
    assert len(found) == 1, f"pyproject.toml must declare torch once in [project].dependencies, got {found}"
    return found[0]


def _pinned_torch() -> Version:
    pins = re.findall(r"^torch==(\S+)\s*$", (REPO / "constraints.txt").read_text(), flags=re.MULTILINE)
    assert len(pins) == 1, f"constraints.txt must pin torch exactly once, got {pins}"
    return Version(pins[0])


def test_declared_range_is_a_range_not_a_pin():
    spec = _declared_torch().specifier
    assert not any(s.operator in ("==", "===") for s in spec), f"torch is pinned in pyproject.toml: {spec}"
    assert spec.contains("2.11.0") and spec.contains("2.14.1"), spec
    assert not spec.contains("2.10.0") and not spec.contains("2.15.0"), spec


def test_pinned_torch_is_in_the_declared_range():
    assert _declared_torch().specifier.contains(_pinned_torch()), (_pinned_torch(), _declared_torch())
