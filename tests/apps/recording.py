"""What the test apps share: ``record(*words)`` appends ``<words> <who> <pid>`` to a file.

The file is named by ``UWSGISIG_TEST_OUT``. One write per line with O_APPEND,
so the lines of many processes never mix.
"""

import os

from uwsgisig import lowlevel

OUT = os.environ["UWSGISIG_TEST_OUT"]


def who() -> str:
    """This process: 'worker1', 'mule2', 'spooler' or 'master'."""
    if lowlevel.worker_id():
        return f"worker{lowlevel.worker_id()}"
    if lowlevel.mule_id():
        return f"mule{lowlevel.mule_id()}"
    if lowlevel.i_am_the_spooler():
        return "spooler"
    return "master"


def record(*words: object) -> None:
    line = " ".join(map(str, words)) + f" {who()} {os.getpid()}\n"
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
