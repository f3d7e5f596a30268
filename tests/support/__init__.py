"""Helpers shared by the tests.

Importing this package installs the fake drivers (`fake_drivers/`) the way pip would install a
plug-in: their directory, with its `.dist-info`, goes on sys.path, so `zerodown.drivers` finds
the router, platform and store of kind "fake" through their entry points."""

from __future__ import annotations

import sys
from pathlib import Path

FAKE_DRIVERS = str(Path(__file__).parent / "fake_drivers")
if FAKE_DRIVERS not in sys.path:
    sys.path.append(FAKE_DRIVERS)
