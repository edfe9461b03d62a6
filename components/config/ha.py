"""High availability: a director pair behind floating addresses (VRRP between the two) and
keepalived's health checks of the real servers, with the timings clients would notice."""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import unquote

from .model import ConfigError, DirectorPeer, DirectorSettings, HealthCheckSettings, ServiceSettings, VrrpSettings
from .names import _hostname
from .reader import _choice, _Section, _shown, _size

HEALTH_CHECK_TYPES = ("http", "tcp")
# A URL path keepalived's HTTP_GET requests as it is: RFC 3986 path characters without the
# ones keepalived.conf or a shell would interpret (quotes, '#', '!', spaces, braces, and '$',
# which keepalived's parser replaces by a definition: $_RANDOM, $_HASH, ...).
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~/%:@&=+,;-]*$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|%00|%2[Ff]")
# keepalived reads its configuration a line at a time into a 1024-byte buffer (parser.c,
# MAXBUF): past 1023 characters the rest is read as a line of its own ("Unknown keyword",
# measured with Debian's 2.2.7). The path's line in a real server's file
# (keepalived-real-server.conf.j2) is indented by 12.
_KEEPALIVED_LINE = 1023
MAX_CHECK_PATH = _KEEPALIVED_LINE - len(" " * 12 + "path ")
# Beyond this, a failure that the cluster mends by itself is still one clients notice: warn.
SLOW_FAILURE_SECONDS = 60
# HTTP statuses that can be the final answer to keepalived's HTTP/1.0 GET (not 1xx).
CHECK_STATUSES = (200, 599)
# keepalived.conf(5): virtual_router_id 0..255 (each pair uses it and the next for its two
# instances); VRRPv2 adverts in whole seconds, 1..255.
MAX_VIRTUAL_ROUTER_ID = 254


def _director(section: _Section) -> DirectorSettings:
    """`lvs:director`: one director, or a pair behind floating addresses (`pair`, `vrrp`)."""
    internal_ip = section.address("internalIp")
    external_ip = section.address("externalIp")
    size = _size(section, "director")
    if "pair" in section.raw and section.raw["pair"] is None:  # never silently one director
        raise ConfigError(f"{section.path('pair')}: null is not a value for this key; remove the key for one director")
    if "pair" not in section.raw:
        section._seen.add("pair")
        if "vrrp" in section.raw:
            raise ConfigError(f"{section.path('vrrp')}: VRRP settings need a director pair (lvs:director.pair)")
        name = _hostname(section, default="director")
        section.reject_unknown()
        return DirectorSettings(name, internal_ip, external_ip, size)
    if "name" in section.raw:
        raise ConfigError(
            f"{section.path('name')}: {_shown(section.raw['name'])} is not used with lvs:director.pair "
            "(each director of the pair has its own name)"
        )
    entries = list(section.items("pair"))
    if len(entries) != 2:
        raise ConfigError(f"{section.path('pair')}: {len(entries)} directors given; a pair is exactly two")
    peers = []
    for entry in entries:
        peers.append(DirectorPeer(_hostname(entry), entry.address("internalIp"), entry.address("externalIp")))
        entry.reject_unknown()
    vrrp_section = section.section("vrrp", {})
    vrrp = VrrpSettings(
        virtual_router_id=vrrp_section.integer("virtualRouterId", 51, lo=1, hi=MAX_VIRTUAL_ROUTER_ID),
        advert_interval=_advert_interval(vrrp_section),
        preempt=vrrp_section.boolean("preempt", True),
    )
    vrrp_section.reject_unknown()
    section.reject_unknown()
    return DirectorSettings(peers[0].name, internal_ip, external_ip, size, pair=(peers[0], peers[1]), vrrp=vrrp)


def _advert_interval(section: _Section) -> Decimal:
    """Whole seconds 1..255 (VRRPv2), or hundredths of a second 0.1..40.95 (VRRPv3: a
    takeover in about 3.6 advert intervals, so 0.5 s takes over in about 2 s)."""
    value = section._get("advertInterval", 1)
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+(\.\d{1,2})?", text):
        raise ConfigError(f"{section.path('advertInterval')}: {_shown(value)} is not seconds (a whole number, or hundredths below 40.96)")
    interval = Decimal(text)
    whole = interval == interval.to_integral_value()
    if not (1 <= interval <= 255 if whole else Decimal("0.1") <= interval <= Decimal("40.95")):
        raise ConfigError(f"{section.path('advertInterval')}: {value} is out of range (whole seconds 1..255, or 0.1..40.95 in hundredths)")
    return Decimal(int(interval)) if whole else interval.normalize()


def _health_check(top: _Section, service: ServiceSettings) -> HealthCheckSettings | None:
    """`lvs:healthCheck`: keepalived checks every real server and takes a dead one out."""
    if "healthCheck" not in top.raw:
        top._seen.add("healthCheck")
        return None
    if top.raw["healthCheck"] is None:  # say, its entries commented out: never silently no checks
        raise ConfigError("lvs:healthCheck: null is not a value for this key; remove the key to run without health checks")
    section = top.section("healthCheck")
    kind = _choice(section, "type", "http", HEALTH_CHECK_TYPES)
    if kind == "tcp":
        for http_only in ("path", "status"):
            if http_only in section.raw:
                raise ConfigError(f"{section.path(http_only)}: {_shown(section.raw[http_only])} applies to type http only, not tcp")
    path = _check_path(section)
    port = section.integer("port", service.port, lo=1, hi=65535)
    if port != service.port:
        raise ConfigError(
            f"{section.path('port')}: {port} is not the service port (lvs:service.port, {service.port}): the web nodes serve "
            "only that port, so every check would fail and keepalived would empty the table; remove the key"
        )
    check = HealthCheckSettings(
        type=kind,
        port=port,
        path=path,
        status=section.integer("status", 200, lo=CHECK_STATUSES[0], hi=CHECK_STATUSES[1]),
        interval=section.integer("interval", 2, lo=1, hi=3600),
        timeout=section.integer("timeout", 1, lo=1, hi=3600),
        retries=section.integer("retries", 1, lo=0, hi=100),
    )
    section.reject_unknown()
    return check


def _slow_failure_warnings(director: DirectorSettings, check: HealthCheckSettings | None) -> list[str]:
    """Legal timings that leave clients failing for longer than SLOW_FAILURE_SECONDS."""
    warnings = []
    if check is not None:
        # keepalived (the templates): a check every `interval` (delay_loop); a failed one is tried
        # `retries` more times, each after `interval` (delay_before_retry), each up to `timeout`.
        dead = check.interval + (check.retries + 1) * check.timeout + check.retries * check.interval
        if dead > SLOW_FAILURE_SECONDS:
            warnings.append(
                f"lvs:healthCheck: a dead real server stays in the table for up to {dead} s (interval {check.interval}, "
                f"timeout {check.timeout}, retries {check.retries}), and its share of requests fails that long"
            )
    if director.vrrp is not None:
        # RFC 5798: the backup takes over after 3 adverts and a skew of up to one more.
        takeover = round(float(director.vrrp.advert_interval) * 3.6, 1)
        if takeover > SLOW_FAILURE_SECONDS:
            warnings.append(
                f"lvs:director.vrrp.advertInterval: {director.vrrp.advert_interval} s: a failover takes about {takeover} s, "
                "with the VIP unanswered that long"
            )
    return warnings


def _check_path(section: _Section) -> str:
    """`lvs:healthCheck.path`: a URI path that reaches Apache as written and that keepalived's
    parser neither rewrites nor cuts."""
    key = section.path("path")
    path = section.string("path", "/")
    if not _URL_PATH.fullmatch(path):
        raise ConfigError(f"{key}: {_shown(path)} is not a plain URL path (starts with '/'; letters, digits and ._~/%:@&=+,;- only)")
    if _BAD_ESCAPE.search(path):
        raise ConfigError(f"{key}: {_shown(path)}: '%' only as a two-hex-digit escape, and never %00 or %2F (Apache refuses them)")
    if any(segment in (".", "..") for segment in unquote(path).split("/")):
        raise ConfigError(f"{key}: {_shown(path)} has a dot segment ('.' or '..'): the request would not reach that path")
    if len(path) > MAX_CHECK_PATH:
        raise ConfigError(
            f"{key}: {len(path)} characters; at most {MAX_CHECK_PATH} fit keepalived's configuration line of {_KEEPALIVED_LINE} characters"
        )
    return str(path)
