"""The journal's crash and outage behaviour: sealing, orphans of dead writers, follow mode."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import sqlalchemy as sa
from factories import event

from spendtrail.journal.spool import Spool, backlog, recover_orphans, sealed_files
from spendtrail.ledger.follow import follow
from spendtrail.ledger.schema import events

WRITER = """
import sys
from pathlib import Path
from spendtrail.journal.spool import Spool
from factories import event
spool = Spool(Path(sys.argv[1]), max_age=3600)
for _ in range(int(sys.argv[2])):
    spool.append(event())
print("written", flush=True)
sys.stdin.read()  # wait to be killed: the file stays open
"""


def test_a_killed_writer_leaves_an_orphan_that_is_recovered_whole(tmp_path):
    spool_dir = tmp_path / "spool"
    tests_dir = os.path.dirname(__file__)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(spool_dir), "25"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": tests_dir})
    try:
        assert writer.stdout.readline().strip() == "written"
        assert recover_orphans(spool_dir) == []  # its writer still runs: not touched
    finally:
        writer.kill()
        writer.wait()
    recovered = recover_orphans(spool_dir)
    assert len(recovered) == 1 and recovered == sealed_files(spool_dir)
    assert len(recovered[0].read_bytes().splitlines()) == 25  # every flushed append survived


def test_an_idle_writer_seals_on_age(tmp_path):
    spool = Spool(tmp_path, max_age=0.05)
    spool.append(event())
    assert sealed_files(tmp_path) == []
    assert backlog(tmp_path)[0] == 1
    time.sleep(0.06)
    spool.seal_if_idle()
    assert len(sealed_files(tmp_path)) == 1


def test_follow_ingests_as_files_are_sealed_and_survives_a_dead_ledger(seeded, tmp_path):
    spool_dir = tmp_path / "spool"
    outages: list[Exception] = []
    stop = threading.Event()
    dead = threading.Thread(target=follow, args=("postgresql://nobody@127.0.0.1:1/none",
                                                 spool_dir),
                            kwargs={"interval": 0.05, "stop": stop, "on_outage": outages.append})
    spool = Spool(spool_dir, max_age=0)
    for _ in range(10):
        spool.append(event())
    dead.start()
    time.sleep(0.3)
    stop.set()
    dead.join()
    assert outages and len(sealed_files(spool_dir)) == 10  # nothing lost, all still waiting

    url = seeded.url.render_as_string(hide_password=False)
    stop = threading.Event()
    live = threading.Thread(target=follow, args=(url, spool_dir),
                            kwargs={"interval": 0.05, "stop": stop})
    live.start()
    deadline = time.monotonic() + 20
    with seeded.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 10:
                break
            time.sleep(0.05)
            conn.rollback()
    spool.append(event())  # sealed at once (max_age=0), just before the stop
    stop.set()
    live.join()
    assert backlog(spool_dir) == (0, 0, 0.0)  # the last round took it
    with seeded.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 11
