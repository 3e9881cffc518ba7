"""Fixtures for the reliability tests; the helpers live in rel_helpers.py (a unique module name, so
they never collide with the other test folders' conftest modules)."""

from rel_helpers import *  # noqa: F401,F403 - re-exports the fixtures
from rel_helpers import _deep_listen_queue  # noqa: F401 - autouse fixture (star imports skip _names)
