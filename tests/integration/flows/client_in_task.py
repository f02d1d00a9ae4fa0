"""A step that reads an earlier run through the client API, inside its task."""

from polyflow import Flow, FlowSpec, NamespaceMismatchError, get_namespace, step


class ClientInTaskFlow(FlowSpec):
    @step
    def start(self):
        self.namespace_seen = get_namespace()
        try:
            run = Flow("HelloFlow").latest_successful_run
        except NamespaceMismatchError:  # no HelloFlow run in this namespace
            run = None
        self.hello_total = run.data.total if run is not None else None
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ClientInTaskFlow()
