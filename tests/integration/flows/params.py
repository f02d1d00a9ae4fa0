"""Parameters of every type, a required one, a separator, JSONType and IncludeFile."""

import json

from polyflow import FlowSpec, IncludeFile, JSONType, Parameter, step


class ParamsFlow(FlowSpec):
    """Echoes its parameters as artifacts."""

    name = Parameter("name", help="Who to greet", required=True)
    count = Parameter("count", help="How many times", default=2)
    ratio = Parameter("ratio", help="A float", default=0.5)
    verbose = Parameter("verbose", help="A boolean", type=bool, default=False)
    config = Parameter("config", help="Any JSON", type=JSONType, default='{"depth": 1}')
    colors = Parameter("colors", help="A list", separator=",", default="red,green")
    data = IncludeFile("data", help="A data file", default=None)
    table = IncludeFile("table", help="Parsed as JSON", parser=json.loads, default=None)
    raw = IncludeFile("raw", is_text=False, help="Bytes", default=None)
    dry = Parameter("dry-run", is_flag=True, default=False, help="A flag")

    LIMIT = 7
    LABELS = {"a": 1}  # noqa: RUF012 (a constant, as flows declare them)

    @step
    def start(self):
        self.seen = {
            "name": self.name,
            "count": self.count,
            "ratio": self.ratio,
            "verbose": self.verbose,
            "config": self.config,
            "colors": self.colors,
            "data": self.data,
            "table": self.table,
            "raw": self.raw,
            "limit": self.LIMIT,
            "labels": self.LABELS,
            "dry": self.dry,
        }
        print(json.dumps({k: v for k, v in self.seen.items() if k != "raw"}, sort_keys=True))
        self.next(self.end)

    @step
    def end(self):
        self.count_in_end = self.count


if __name__ == "__main__":
    ParamsFlow()
