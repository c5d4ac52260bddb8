"""Instructions per node execution, counted, not timed: W4 (``bench/scaling.py w4``)
run under valgrind's callgrind with N executions and with 1, the difference divided
by the nodes the N-1 more ran. A shared machine's speed drifts by half within
minutes; an instruction count repeats to about 0.1%, so it tells a change of a few
percent apart where wall-clock runs cannot. It is a figure to compare two versions
of the code by, not a goal (it counts no waiting, no cache misses, no GIL hand-offs).

    python bench/instructions.py [--executions 300] [sync|async ...]

Needs valgrind (Debian: ``apt-get install valgrind``); a run takes about a minute.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODES = 10  # W4's chains

DRIVER = """
import sys, anyio
sys.path.insert(0, {here!r})
import scaling
anyio.run(scaling.w4, sys.argv[1], sys.argv[2])
"""


def counted(executions: int, kind: str) -> int:
    """The instructions a process running W4 with ``executions`` executed."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", DRIVER.format(here=str(HERE)), str(executions), kind],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind said no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kinds", nargs="*", default=["sync", "async"], help="sync, async")
    parser.add_argument("--executions", type=int, default=300)
    options = parser.parse_args()
    if set(options.kinds) - {"sync", "async"} or options.executions < 2:
        parser.error("kinds are sync and async; --executions at least 2")
    if shutil.which("valgrind") is None:
        sys.exit("bench/instructions.py needs valgrind (Debian: apt-get install valgrind)")
    for kind in options.kinds:
        more = counted(options.executions, kind) - counted(1, kind)
        per_node = more / ((options.executions - 1) * NODES)
        print(f"W4 {kind:5}: {per_node:,.0f} instructions per node execution")


if __name__ == "__main__":
    main()
