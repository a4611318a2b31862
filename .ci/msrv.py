"""Fails when a dependency declares a rust-version above the workspace's.

No second toolchain can be installed here, so the declared MSRV is not
compiled against; this catches the most common way it silently breaks (a
dependency update that raises its own MSRV). clippy's `incompatible_msrv`
covers Ecco's own use of newer std APIs.

Usage: cargo metadata --format-version 1 --locked | python3 .ci/msrv.py
"""

import json
import sys


def version(text):
    """`1.88` and `1.88.0` are the same version."""
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    metadata = json.load(sys.stdin)
    members = set(metadata["workspace_members"])
    resolved = {node["id"] for node in metadata["resolve"]["nodes"]}
    packages = [p for p in metadata["packages"] if p["id"] in resolved]
    declared = {p.get("rust_version") for p in packages if p["id"] in members}
    if len(declared) != 1 or None in declared:
        print(f"workspace crates must share one rust-version, found {sorted(map(str, declared))}")
        return 1
    msrv = declared.pop()
    above = sorted(
        (version(p["rust_version"]), p["name"], p["version"])
        for p in packages
        if p.get("rust_version") and version(p["rust_version"]) > version(msrv)
    )
    for need, name, ver in above:
        print(f"{name} {ver} needs Rust {'.'.join(map(str, need))}, above Ecco's rust-version {msrv}")
    if above:
        return 1
    highest = max((version(p["rust_version"]) for p in packages if p.get("rust_version")), default=())
    print(f"rust-version {msrv}: {len(packages)} resolved packages, highest declared {'.'.join(map(str, highest))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
