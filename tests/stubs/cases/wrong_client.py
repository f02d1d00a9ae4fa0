"""Client code with misspelt properties and wrong types (syntax: wrong_decorator_argument.py)."""

from __future__ import annotations

from polyflow import Flow, Run, Task

run = Run("HelloFlow/1")
# E[mypy]: "Run" has no attribute "sucessful"; maybe "successful"?
# E[pyright]: Cannot access attribute "sucessful" for class "Run"
print(run.sucessful)
# E[mypy]: "Flow" has no attribute "latest_runn"; maybe "latest_run"?
# E[pyright]: Cannot access attribute "latest_runn" for class "Flow"
print(Flow("HelloFlow").latest_runn)
task = Task("HelloFlow/1/start/2")
# E[mypy]: "Task" has no attribute "stdot"; maybe "stdout"?
# E[pyright]: Cannot access attribute "stdot" for class "Task"
print(task.stdot)
# E[mypy]: Incompatible types in assignment (expression has type "str", variable has type "int")
# E[pyright]: Type "str" is not assignable to declared type "int"
count: int = task.stdout
if run.data is not None:
    print(run.data.x)
# E[mypy]: Item "None" of "TaskData | None" has no attribute "x"
# E[pyright]: "x" is not a known attribute of "None"
print(run.data.x)
