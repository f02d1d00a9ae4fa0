"""gRPC request messages built with fields of the wrong type or name (syntax:
wrong_decorator_argument.py)."""

from __future__ import annotations

from polyflow.api.metadata.v1 import request_response_pb2 as metadata_rr
from polyflow.api.runtime.v1 import request_response_pb2 as runtime_rr

# E[mypy]: Argument "page_size" to "ListRunsRequest" has incompatible type "str"; expected "int"
# E[pyright]: "Literal['10']" cannot be assigned to parameter "page_size" of type "int"
listing = metadata_rr.ListRunsRequest(parent="flows/HelloFlow", page_size="10")
# E[mypy]: Argument "name" to "GetRunRequest" has incompatible type "int"; expected "str"
# E[pyright]: "Literal[3]" cannot be assigned to parameter "name" of type "str"
lookup = metadata_rr.GetRunRequest(name=3)
# E[mypy]: Unexpected keyword argument "parnt" for "ListRunsRequest"; did you mean "parent"?
# E[pyright]: No parameter named "parnt"
typo = metadata_rr.ListRunsRequest(parnt="flows/HelloFlow")
# E[mypy]: Incompatible types in assignment (expression has type "int", variable has type "str")
# E[pyright]: Cannot assign to attribute "page_token" for class "ListRunsRequest"
listing.page_token = 7
# E: "request_id"
# E[mypy]: Argument "reason" to "CancelRunRequest" has incompatible type "None"; expected "str"
cancel = runtime_rr.CancelRunRequest(run="flows/F/runs/1", reason=None, request_id=b"x")
