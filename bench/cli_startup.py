"""CLI start-up: how long `spendtrail` takes before it does anything, and what it imports.

    python bench/cli_startup.py [--runs 15] [--top 15]

Runs each command below `--runs` times as a fresh process (the `spendtrail` console script
next to this Python, else `python -m spendtrail.cli.app`) with SPENDTRAIL_HOME in a temporary
folder, and prints the median and the fastest wall time and the median CPU time (user +
system). Then it imports the CLI once under `python -X importtime` for `spendtrail --help`
and prints the packages that cost the most (self time summed per top-level package) and the
module count. Target: `--help` and
`ledger path` under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

COMMANDS = [
    ["--help"],
    ["--version"],
    ["ledger", "path"],
    ["reconcile", "--help"],
    ["report", "chargeback", "--help"],
    ["gateway", "--help"],
]


def cli() -> list[str]:
    script = Path(sys.executable).with_name("spendtrail")
    if script.exists():
        return [str(script)]
    found = shutil.which("spendtrail")
    return [found] if found else [sys.executable, "-m", "spendtrail.cli.app"]


def cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time, CPU time (user + system: less sensitive to a busy machine) and exit code."""
    start, start_cpu = time.perf_counter(), cpu()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, cpu() - start_cpu, done.returncode


def import_costs(env: dict[str, str]) -> tuple[Counter[str], int, float]:
    """Self time (s) per top-level package, module count and total, for `spendtrail --help`."""
    runner = (
        "import sys; sys.argv = ['spendtrail', '--help']; "
        "from spendtrail.cli.app import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", runner],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    per_package: Counter[str] = Counter()
    modules = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        per_package[name.strip().split(".")[0]] += int(self_us) / 1e6
        modules += 1
    return per_package, modules, sum(per_package.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    base = cli()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "SPENDTRAIL_HOME": home}
        print(f"{' '.join(base)}  ({args.runs} runs each, {os.cpu_count()} cores)")
        print(f"{'command':<36} {'median s':>9} {'min s':>7} {'median cpu s':>13}  exit")
        for command in COMMANDS:
            timed(base + command, env)  # warm the file cache and .pyc files
            runs = [timed(base + command, env) for _ in range(args.runs)]
            wall = [w for w, _, _ in runs]
            used = statistics.median(c for _, c, _ in runs)
            print(
                f"{' '.join(['spendtrail', *command]):<36} {statistics.median(wall):>9.3f} "
                f"{min(wall):>7.3f} {used:>13.3f}  {runs[-1][2]}"
            )

        per_package, modules, total = import_costs(env)
    print(
        f"\n`spendtrail --help` imports {modules} modules, {total:.3f} s of import time "
        f"(self time per top-level package, one run under -X importtime):"
    )
    for package, seconds in per_package.most_common(args.top):
        print(f"  {package:<28} {seconds:>7.3f}")


if __name__ == "__main__":
    main()
