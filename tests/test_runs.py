"""How a lab run notices a stop signal: a signal that a library swallowed or wrapped on its
way up still stops the run at the next checkpoint (fast: no VM, no namespace)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from lab.host import runs

PROJECT_DIR = Path(__file__).resolve().parent.parent

SWALLOWING_LIBRARY = textwrap.dedent(
    """
    import os, signal
    from lab.host import runs

    runs.install_stop_handlers()
    try:
        os.kill(os.getpid(), signal.SIG{name})
    except BaseException as caught:  # what an asyncio task or an import hook does with it
        print("swallowed", type(caught).__name__)
    try:
        runs.raise_if_stopped()
    except runs.Stopped as stopped:
        print("stopped", stopped.signum)
    """
)


def run(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=runs.with_stop_signals_default,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_swallowed_stop_is_raised_again_at_the_next_checkpoint() -> None:
    assert run(SWALLOWING_LIBRARY.format(name="TERM")) == ["swallowed Stopped", "stopped 15"]


def test_a_hangup_is_a_stop_too() -> None:
    assert run(SWALLOWING_LIBRARY.format(name="HUP")) == ["swallowed Stopped", "stopped 1"]


def test_without_a_signal_the_checkpoint_lets_the_run_go_on() -> None:
    code = "from lab.host import runs\nruns.install_stop_handlers()\nruns.raise_if_stopped()\nprint('went on')"
    assert run(code) == ["went on"]


def test_a_signal_during_teardown_is_noted_and_not_obeyed() -> None:
    code = textwrap.dedent(
        """
        import os, signal
        from lab.host import runs

        runs.install_stop_handlers()
        with runs.shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            print("teardown finished")
        """
    )
    assert run(code) == ["lab: SIGTERM during teardown; finishing the teardown", "teardown finished"]


def test_a_stop_during_a_deferred_section_is_raised_when_it_ends() -> None:
    code = textwrap.dedent(
        """
        import os, signal
        from lab.host import runs

        runs.install_stop_handlers()
        try:
            with runs.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                print("section finished")
        except runs.Stopped as stopped:
            print("stopped", stopped.signum)
        """
    )
    assert run(code) == ["section finished", "stopped 2"]
