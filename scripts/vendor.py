#!/usr/bin/env python3
"""Fetch, verify and check the vendored front-end libraries under ``static/vendor/``.

Each library is an unmodified file set from its npm release tarball, pinned by version and by
the registry's sha512 integrity. ``static/vendor/MANIFEST.json`` records every file's sha256;
the console serves these files itself and never loads anything from a CDN.

    python scripts/vendor.py          # fetch from registry.npmjs.org and write the files
    python scripts/vendor.py --check  # verify the files on disk against the manifest (offline)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "static" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"

# name, npm package, version, registry integrity, files inside the tarball ("package/" prefix)
LIBRARIES = [
    (
        "htmx",
        "htmx.org",
        "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        ["dist/htmx.min.js", "LICENSE"],
    ),
    (
        "sortablejs",
        "sortablejs",
        "1.15.7",
        "sha512-Kk8wLQPlS+yi1ZEf48a4+fzHa4yxjC30M/Sr2AnQu+f/MPwvvX9XjZ6OWejiz8crBsLwSq8GHqaxaET7u6ux0A==",
        ["Sortable.min.js", "LICENSE"],
    ),
    (
        "codemirror",
        "codemirror",
        "5.65.21",
        "sha512-6teYk0bA0nR3QP0ihGMoxuKzpl5W80FpnHpBJpgy66NK3cZv5b/d/HY8PnRvfSsCG1MTfr92u2WUl+wT0E40mQ==",
        [
            "lib/codemirror.js",
            "lib/codemirror.css",
            "mode/python/python.js",
            "addon/edit/matchbrackets.js",
            "LICENSE",
        ],
    ),
]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch() -> None:
    manifest: dict[str, dict] = {}
    for name, package, version, integrity, files in LIBRARIES:
        url = f"https://registry.npmjs.org/{package}/-/{package.split('/')[-1]}-{version}.tgz"
        with urllib.request.urlopen(url, timeout=60) as answer:
            tarball = answer.read()
        algorithm, expected = integrity.split("-", 1)
        digest = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
        if digest != expected:
            sys.exit(f"{package} {version}: integrity mismatch ({digest} != {expected})")
        folder = VENDOR / f"{name}-{version}"
        sums: dict[str, str] = {}
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            for path in files:
                member = archive.extractfile(f"package/{path}")
                if member is None:
                    sys.exit(f"{package} {version}: no {path} in the tarball")
                data = member.read()
                target = folder / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                sums[path] = sha256(data)
        manifest[name] = {
            "package": package,
            "version": version,
            "tarball": url,
            "integrity": integrity,
            "folder": folder.name,
            "files": sums,
        }
        print(f"{package} {version}: {len(files)} files in static/vendor/{folder.name}")
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


def check() -> list[str]:
    """Problems with the vendored files, or an empty list."""
    problems = []
    manifest = json.loads(MANIFEST.read_text())
    for name, package, version, integrity, files in LIBRARIES:
        entry = manifest.get(name)
        if not entry or entry["version"] != version or entry["integrity"] != integrity:
            problems.append(f"{name}: manifest does not pin {package} {version}")
            continue
        for path in files:
            target = VENDOR / entry["folder"] / path
            if not target.is_file():
                problems.append(f"{name}: missing {path}")
            elif sha256(target.read_bytes()) != entry["files"].get(path):
                problems.append(f"{name}: {path} differs from the release")
    return problems


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        found = check()
        print("\n".join(found) or "vendored files match the manifest")
        sys.exit(1 if found else 0)
    fetch()
