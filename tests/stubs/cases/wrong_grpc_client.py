"""The thin gRPC client called with wrong arguments (syntax: wrong_decorator_argument.py)."""

from __future__ import annotations

from polyflow.grpc import CoreClient, connect

client: CoreClient = connect()
# E[mypy]: List item 0 has incompatible type "str"; expected "ValueType"
# E[pyright]: cannot be assigned to parameter "states"
runs = client.list_runs("flows/HelloFlow", states=["FAILED"])
# E[mypy]: Argument "attempt" to "get_task" of "CoreClient" has incompatible type "str"
# E[pyright]: "Literal['0']" cannot be assigned to parameter "attempt"
task = client.get_task("flows/F/runs/1/steps/start/tasks/2", attempt="0")
# E[mypy]: "CoreClient" has no attribute "get_runn"; maybe "get_run"?
# E[pyright]: Cannot access attribute "get_runn" for class "CoreClient"
print(client.get_runn("flows/F/runs/1"))
