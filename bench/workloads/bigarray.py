"""bigarray: one large numpy array written in a step, read and checksummed in the next.

The size in MiB comes from BENCH_ARRAY_MB (default 500). The array's bytes are the same in
every run (fixed seed), so a second run in the same project finds them stored already.
"""

import os
import zlib

import numpy as np
from metaflow import FlowSpec, step

MB = int(os.environ.get("BENCH_ARRAY_MB", "500"))


class BigArrayFlow(FlowSpec):
    @step
    def start(self):
        self.arr = np.random.default_rng(0).random(MB * 2**20 // 8)
        self.next(self.check)

    @step
    def check(self):
        self.checksum = zlib.crc32(self.arr)
        self.nbytes = self.arr.nbytes
        self.next(self.end)

    @step
    def end(self):
        print("checksum", self.checksum, "bytes", self.nbytes)


if __name__ == "__main__":
    BigArrayFlow()
