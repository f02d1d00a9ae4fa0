"""Loading a flow's module and class from its source file.

The module is imported under its file's stem (``hello.py`` gives ``hello``), not as
``__main__``, so the file's ``if __name__ == "__main__"`` block (the command line) does not
run; its folder goes first on ``sys.path`` so the flow's own imports work as they do when
the file is run as a script.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

from polyflow._authoring.flowspec import FlowSpec
from polyflow.exceptions import PolyflowError

__all__ = ["find_flow_class", "load_flow_module"]


def load_flow_module(code_path: str) -> ModuleType:
    """Import the flow file ``code_path`` as a module named after its stem.

    A second call for the same file returns the module already loaded.

    Raises:
        PolyflowError: The file is missing, or its stem names another module already
            imported.
        Exception: Whatever the module raises while it is imported.
    """
    path = os.path.abspath(code_path)
    if not os.path.isfile(path):
        raise PolyflowError(f"flow file {path} does not exist")
    folder = os.path.dirname(path)
    name = os.path.splitext(os.path.basename(path))[0]
    existing = sys.modules.get(name)
    if existing is not None:
        if os.path.abspath(getattr(existing, "__file__", "") or "") == path:
            return existing
        raise PolyflowError(
            f"cannot load flow file {path}: its module name {name!r} is already taken by "
            f"{getattr(existing, '__file__', None) or 'a built-in module'}; rename the file"
        )
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PolyflowError(f"cannot load flow file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickles of classes defined in the flow file resolve
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def find_flow_class(module: ModuleType, class_name: str) -> type[FlowSpec]:
    """The flow class ``class_name`` defined in ``module``.

    Raises:
        PolyflowError: No such attribute, or it is not a FlowSpec subclass.
    """
    found = getattr(module, class_name, None)
    if not (isinstance(found, type) and issubclass(found, FlowSpec)):
        raise PolyflowError(
            f"{module.__file__} defines no flow class {class_name!r} (a FlowSpec subclass)"
        )
    return found
