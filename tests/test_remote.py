"""How every rule script runs on a node (components/remote.py): as root, `set -eu`, and one at
a time per node, since Pulumi runs independent Commands at once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from components.remote import LOCK_FILE, as_root

FAKES = Path(__file__).with_name("fakes")


def start(script: str, tmp_path: Path) -> subprocess.Popen[str]:
    command = as_root(script).replace(LOCK_FILE, str(tmp_path / "lock"))
    env = {**os.environ, "PATH": f"{FAKES}:{os.environ['PATH']}"}
    return subprocess.Popen(["sh", "-c", command], env=env, text=True)


def wait_for(path: Path, limit: int = 500) -> None:
    """Bounded: at most `limit` checks, 20 ms apart (the fakes' sleep does not sleep)."""
    for _ in range(limit):
        if path.exists():
            return
        subprocess.run(["/bin/sleep", "0.02"], check=True)
    raise AssertionError(f"{path} never appeared")


def test_two_scripts_on_one_node_run_one_after_the_other(tmp_path: Path) -> None:
    log, go = tmp_path / "log", tmp_path / "go"
    holds_until_go = f"n=0; while [ ! -e {go} ] && [ $n -lt 500 ]; do n=$((n+1)); /bin/sleep 0.02; done"
    first = start(f"echo first-begins >> {log}\n{holds_until_go}\necho first-ends >> {log}", tmp_path)
    wait_for(log)
    second = start(f"echo second >> {log}", tmp_path)
    # The second script would have written by now had it not waited for the lock.
    for _ in range(25):
        subprocess.run(["/bin/sleep", "0.02"], check=True)
    go.touch()
    assert (first.wait(timeout=30), second.wait(timeout=30)) == (0, 0)
    assert log.read_text().split() == ["first-begins", "first-ends", "second"]


def test_a_failing_line_fails_the_script(tmp_path: Path) -> None:
    assert start("false\necho not reached", tmp_path).wait(timeout=30) != 0
