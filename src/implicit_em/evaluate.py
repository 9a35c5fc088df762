"""Moved to `implicit_em.lm_eval` (issue 14); this path is an alias kept for old imports.

`import implicit_em.evaluate` used to replace the package's function `implicit_em.evaluate`
(the one-model metrics, `train.loop.evaluate`) by this module. The module is therefore
callable: `implicit_em.evaluate(model, x)` runs that function whichever of the two it finds.
"""

import sys
import types
import warnings

from implicit_em import lm_eval

warnings.warn("implicit_em.evaluate moved to implicit_em.lm_eval: import it from there",
              DeprecationWarning, stacklevel=2)  # fmt: skip


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from implicit_em.train.loop import evaluate

        return evaluate(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(lm_eval, name)


sys.modules[__name__].__class__ = _CallableModule
