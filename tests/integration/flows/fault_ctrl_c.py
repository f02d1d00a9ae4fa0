"""A foreach whose tasks each start a child process and wait while $PF_FAULT_DIR/hold exists
(each announces its own pid and its child's); Ctrl-C is sent meanwhile. Without the file the
splits finish at once, so a resumed run goes through."""

import os
import subprocess
import sys
import time

from polyflow import FlowSpec, step


def announce(name, pid):
    """Write ``pid`` to $PF_FAULT_DIR/<name>.pid (atomically)."""
    folder = os.environ["PF_FAULT_DIR"]
    temporary = os.path.join(folder, f".{name}.{os.getpid()}")
    with open(temporary, "w") as handle:
        handle.write(str(pid))
    os.replace(temporary, os.path.join(folder, f"{name}.pid"))


class FaultCtrlCFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(4))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        hold = os.path.join(os.environ["PF_FAULT_DIR"], "hold")
        if os.path.exists(hold):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            announce(f"child-{self.index}", child.pid)
            announce(f"work-{self.index}", os.getpid())
            while os.path.exists(hold):
                time.sleep(0.1)
            child.kill()
            child.wait()
        self.doubled = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.doubled = [inp.doubled for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FaultCtrlCFlow()
