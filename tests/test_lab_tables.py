"""How the lab reads a real server's weight from saved IPVS rules, in every forwarding method."""

from __future__ import annotations

from lab.scenario.lifecycles import weight

RULES = """-A -t 172.30.9.10:8080 -s wrr
-a -t 172.30.9.10:8080 -r 10.40.0.21:8080 -i -w 2 --tun-type ipip
-a -t 172.30.9.10:8080 -r 10.40.0.22:8080 -i -w 0 --tun-type ipip
-a -t 12.0.0.1:80 -r 12.0.0.50:80 -g -w 1
-a -t 12.0.0.1:80 -r 192.168.75.60:80 -m -w 3
"""


def test_the_weight_is_the_word_after_w_whatever_follows() -> None:
    assert [weight(RULES, ip) for ip in ("10.40.0.21", "10.40.0.22", "12.0.0.50", "192.168.75.60")] == ["2", "0", "1", "3"]


def test_a_real_server_not_in_the_rules_has_no_weight() -> None:
    assert weight(RULES, "10.40.0.2") == ""
