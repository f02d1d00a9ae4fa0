"""Steps of a Python flow implemented by R functions.

Put ``@r_step(file=..., function=...)`` above ``@step``::

    from polyflow import FlowSpec, step
    from polyflow.r import r_step

    class ModelFlow(FlowSpec):
        @step
        def start(self):
            self.data = pandas.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.1, 3.9, 6.2]})
            self.next(self.fit)

        @r_step(file="fit.R", function="fit_lm")
        @step
        def fit(self):
            self.next(self.end)

        @step
        def end(self):
            print(self.coefficients)

The step runs in an R task worker (``Rscript``, with the R package ``polyflow`` installed):
``fit_lm(self)`` (a join: ``fit_lm(self, inputs)``) is called with an R ``self`` on which
``self$data`` is the data frame and ``self$coefficients <- coef(model)`` stores a value. The
Python method's body is never run; its ``self.next(...)`` call still declares the step's
transition, which the R worker takes when the function returns. Values cross between the
languages through the core's converter (``docs/datastore.md``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from polyflow._authoring.step import step_marks

__all__ = ["r_step"]

F = TypeVar("F", bound=Callable[..., Any])

_FUNCTION_RE = re.compile(r"^[A-Za-z.][A-Za-z0-9._]*$")


def r_step(*, file: str, function: str) -> Callable[[F], F]:
    """Implement the step below with the R function ``function`` of ``file``.

    Args:
        file: The R source file, relative to the flow's folder (or absolute).
        function: The name of the R function to call with ``self`` (and ``inputs``).

    Returns:
        A decorator for a function already marked with ``@step``.

    Raises:
        TypeError: Placed below ``@step``, or given empty names.
    """
    if not file or not isinstance(file, str):
        raise TypeError("@r_step needs file=, the R source file")
    if not isinstance(function, str) or not _FUNCTION_RE.match(function):
        raise TypeError(f"@r_step needs function=, an R function name, not {function!r}")

    def decorate(func: F) -> F:
        marks = step_marks(func)
        if marks is None:
            raise TypeError("@r_step must be placed above @step")
        marks.language = "r"
        marks.foreign_file = file
        marks.foreign_function = function
        return func

    return decorate
