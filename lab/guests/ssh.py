"""SSH to the nodes from inside the lab's namespace, as the Commands reach them: the run's own
key, one known-hosts file for the run, bounded connection attempts."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ..host.netns import Namespace


class SshClient:
    def __init__(self, ns: Namespace, key: Path, known_hosts: Path) -> None:
        self.ns = ns
        self.key = key
        self.known_hosts = known_hosts

    def argv(self, host: str, user: str, script: str, *, connect_timeout: int = 5) -> list[str]:
        """The ssh command line that hands `script` to the login shell of `user` on `host`."""
        options = {
            "BatchMode": "yes",
            "IdentitiesOnly": "yes",
            "StrictHostKeyChecking": "no",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "ConnectTimeout": str(connect_timeout),
            "ConnectionAttempts": "1",
            "ServerAliveInterval": "5",
            "ServerAliveCountMax": "3",
            "LogLevel": "ERROR",
        }
        flags = [part for name, value in options.items() for part in ("-o", f"{name}={value}")]
        return ["ssh", "-i", str(self.key), *flags, "-F", "/dev/null", f"{user}@{host}", "--", script]

    def run(
        self, host: str, user: str, script: str, *, timeout: float = 300, retries: int = 3, retry_delay: float = 3
    ) -> subprocess.CompletedProcess[str]:
        """Runs `script` on the node. Connection failures (ssh exit 255) are tried again up to
        `retries` times; the script's own failures are not. `timeout` bounds each attempt."""
        argv = self.argv(host, user, script)
        attempt = 0
        while True:
            try:
                result: subprocess.CompletedProcess[str] = self.ns.run(argv, check=False, timeout=timeout)
            except subprocess.TimeoutExpired:
                if attempt == retries:
                    raise
            else:
                if result.returncode != 255 or attempt == retries:
                    return result
                time.sleep(retry_delay)
            attempt += 1
