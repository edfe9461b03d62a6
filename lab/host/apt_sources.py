"""The apt sources the image is built from: the host's own Debian mirror (a Debian 12 host's
deb822 or one-line sources), so that a build reaches what the host reaches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

SUITE = "bookworm"


def deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    stanza: dict[str, str] = {}
    key = None
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
            continue
        if raw[0] in " \t" and key:
            stanza[key] += "\n" + raw.strip()
            continue
        if ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip()
            stanza[key] = value.strip()


def host_debian_sources(suite: str = SUITE) -> str:
    """The host's apt sources for `suite` (and -updates/-security), deb822.

    The build reaches Debian exactly as the host's apt does.  Entries of
    other suites (third-party repositories) are ignored.  Falls back to
    deb.debian.org if the host has none.
    """
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    out: list[str] = []
    etc_apt = Path("/etc/apt")
    files = []
    if (etc_apt / "sources.list").is_file():
        files.append(etc_apt / "sources.list")
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for f in files:
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for st in deb822_stanzas(text):
                if st.get("Enabled", "yes").lower() == "no":
                    continue
                if "deb" not in st.get("Types", "").split():
                    continue
                suites = [s for s in st.get("Suites", "").split() if s in wanted]
                if not suites or not st.get("URIs"):
                    continue
                lines = [
                    "Types: deb",
                    f"URIs: {st['URIs']}",
                    f"Suites: {' '.join(suites)}",
                    f"Components: {st.get('Components', 'main')}",
                ]
                if "Signed-By" in st:
                    lines.append(f"Signed-By: {st['Signed-By']}")
                out.append("\n".join(lines))
        else:
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if not words or words[0] != "deb":
                    continue
                opts = []
                rest = words[1:]
                if rest and rest[0].startswith("["):
                    while rest:
                        w = rest.pop(0)
                        opts.append(w.strip("[]"))
                        if w.endswith("]"):
                            break
                if len(rest) < 2 or rest[1] not in wanted:
                    continue
                lines = [
                    "Types: deb",
                    f"URIs: {rest[0]}",
                    f"Suites: {rest[1]}",
                    f"Components: {' '.join(rest[2:]) or 'main'}",
                ]
                for o in opts:
                    k, _, v = o.partition("=")
                    if k == "signed-by" and v:
                        lines.append(f"Signed-By: {v}")
                out.append("\n".join(lines))
    if not out:
        out.append(
            "Types: deb\nURIs: http://deb.debian.org/debian\n"
            f"Suites: {suite} {suite}-updates\nComponents: main\n\n"
            "Types: deb\nURIs: http://deb.debian.org/debian-security\n"
            f"Suites: {suite}-security\nComponents: main"
        )
    return "\n\n".join(out) + "\n"
