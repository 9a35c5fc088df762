"""Old module paths that moved in the redesign (issue 14) keep working through this alias.

`alias(__name__, "new.path")` in an old module makes the old name the very same module object
as the new one (so attributes, private helpers and monkeypatching behave identically) and
warns once with a DeprecationWarning that names the new path.
"""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Replace module `old` in sys.modules by module `new`, warning that it moved."""
    warnings.warn(
        f"{old} moved to {new}: import it from there (the old path will be removed)",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
