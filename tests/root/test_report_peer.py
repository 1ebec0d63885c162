"""A report's socket must be root's: a listener of another user is refused before a byte
is read (root only: the test listens as another user)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from diag_wrapper import report
from diag_wrapper.model import ALLOW, Deny, Plan

LISTEN = ("import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen();"
          " print('up', flush=True); c, _ = s.accept(); c.sendall(b'S\\0\\0\\0\\0'); time.sleep(5)")


def test_a_socket_another_user_listens_on_is_refused():
    where = tempfile.mkdtemp(prefix="diag-report-peer-", dir="/tmp")  # reachable by nobody
    os.chmod(where, 0o777)
    path = f"{where}/fake.sock"
    listener = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                                 "-c", LISTEN, path], stdout=subprocess.PIPE)
    try:
        assert listener.stdout.readline() == b"up\n"
        p = Plan(ALLOW, "allow", "x", b"report t", rule="report t", argv=("report", "t"),
                 exec_argv=("python", "t", path), connect=2)
        with pytest.raises(Deny) as refused:
            report.connect(p)
        assert refused.value.code == "report.refused" and "uid 65534" in refused.value.message
    finally:
        listener.kill()
        listener.wait()
        shutil.rmtree(where)
