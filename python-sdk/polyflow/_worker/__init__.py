"""The Python task worker: runs one task attempt of a flow and reports it to the core.

Started as ``python -m polyflow._worker`` with ``POLYFLOW_TASK_SPEC`` naming a serialized
``TaskSpec`` file. :func:`polyflow._worker.main.prepare` (imports and the flow module) is
kept apart from :func:`polyflow._worker.task.run_task` (one task), so a pre-forked pool can
do the first once and the second per child.
"""
