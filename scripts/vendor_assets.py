"""Vendor the JavaScript the published site needs, so that it reads fully offline.

The site serves three npm packages itself instead of loading them from a CDN:

* ``mathjax`` 3: the ``tex-mml-chtml.js`` bundle (``mathjax_path``) plus every component it may
  load later (TeX extensions through ``autoload``, the CHTML web fonts, the menu, the
  accessibility tools and the speech-rule engine);
* ``requirejs`` 2.3: the AMD loader that the ipywidgets HTML manager needs;
* ``@jupyter-widgets/html-manager`` 1.x: ``dist/embed-amd.js`` (``nb_ipywidgets_js``), which
  bundles the ``base``, ``controls`` and ``output`` widget modules of ipywidgets 8, with the
  Font Awesome fonts its stylesheet points at. ``book/_static/widgets-offline.js`` (committed)
  tells it where those fonts are and lets its MathJax 2 calls reach MathJax 3.

Each package is a registry tarball pinned by version and by its npm ``integrity`` hash
(``sha512-...``). Tarballs are cached in ``_vendor/`` (gitignored); a cached file whose hash does
not match is fetched again, and a download whose hash does not match is an error. The chosen files
are unpacked into ``book/_static/vendor/<name>/`` (gitignored), which ``_config.yml`` puts on
Sphinx's ``html_static_path``. A ``manifest.json`` there records what was unpacked: the
package, version and integrity, and the sha256 of every file as it came out of the verified
tarball. ``--check`` (and every run, before deciding to unpack again) verifies every file against
it, so a file changed, removed or added after unpacking is caught; a second run with nothing
changed only re-hashes.

    python scripts/vendor_assets.py            # fetch (if needed) and unpack
    python scripts/vendor_assets.py --check    # exit 1 unless every vendored file is as unpacked

The registry is ``https://registry.npmjs.org`` unless ``NPM_CONFIG_REGISTRY`` says otherwise.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import posixpath
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_vendor"
DEST = ROOT / "book" / "_static" / "vendor"
MANIFEST = "manifest.json"

# MathJax's combined bundles other than the one we load are entry points, never loaded lazily.
_MATHJAX_UNUSED = {
    "es5/mml-chtml.js", "es5/mml-svg.js", "es5/node-main.js", "es5/tex-chtml.js",
    "es5/tex-chtml-full.js", "es5/tex-chtml-full-speech.js", "es5/tex-mml-svg.js",
    "es5/tex-svg.js", "es5/tex-svg-full.js", "es5/latest.js",
}
_HTML_MANAGER_FILES = (".woff", ".woff2", ".ttf", ".eot", ".svg")


@dataclass(frozen=True)
class Package:
    """One npm tarball: where it comes from, its pinned hash, and which files the site gets."""

    name: str
    version: str
    integrity: str  # npm's Subresource-Integrity string, "sha512-<base64>"
    dest: str  # folder under book/_static/vendor/
    strip: str  # prefix removed from the member paths (after "package/")
    select: Callable[[str], bool]  # member path (relative to strip) -> unpack it?

    @property
    def tarball_name(self) -> str:
        return f"{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"

    def url(self, registry: str) -> str:
        return f"{registry.rstrip('/')}/{self.name}/-/{self.tarball_name}"

    @property
    def cache_path(self) -> Path:
        return CACHE / f"{self.name.replace('/', '__')}-{self.version}.tgz"


PACKAGES = (
    Package(
        name="mathjax",
        version="3.2.2",
        integrity="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        dest="mathjax",
        strip="es5/",
        select=lambda p: f"es5/{p}" not in _MATHJAX_UNUSED and not p.endswith(".map"),
    ),
    Package(
        name="requirejs",
        version="2.3.7",
        integrity="sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
        dest="requirejs",
        strip="",
        select=lambda p: p == "require.js",  # its MIT licence header is in the file
    ),
    Package(
        name="@jupyter-widgets/html-manager",
        version="1.0.7",
        integrity="sha512-2xGwS7vVd2RGlKMiSqj1vYv2X59V73ygefUodhzy9Bho0mswWT/yo3Cg7MaYOqwozQjNo5k3rbJ3cETXWUwJ/g==",
        dest="html-manager",
        strip="dist/",
        select=lambda p: p == "embed-amd.js" or ("/" not in p and p.endswith(_HTML_MANAGER_FILES)),
    ),
)
# Licence files are unpacked beside the code wherever the tarball has one.
_LICENCES = ("LICENSE", "LICENSE.txt", "LICENSE.md")


def sri(data: bytes, algorithm: str = "sha512") -> str:
    """The Subresource-Integrity string of ``data``: ``"<alg>-" + base64(digest)``."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode('ascii')}"


def matches(data: bytes, integrity: str) -> bool:
    algorithm = integrity.split("-", 1)[0]
    return sri(data, algorithm) == integrity


def fetch(pkg: Package, registry: str) -> bytes:
    """The package's tarball, from the cache when its hash matches, else from the registry."""
    if pkg.cache_path.is_file():
        data = pkg.cache_path.read_bytes()
        if matches(data, pkg.integrity):
            return data
        print(f"   cached {pkg.cache_path.name} has the wrong hash; fetching it again")
    url = pkg.url(registry)
    print(f"   fetching {url}")
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (https registry)
        data = response.read()
    if not matches(data, pkg.integrity):
        raise SystemExit(
            f"integrity check failed for {pkg.name}@{pkg.version}: expected {pkg.integrity}, "
            f"got {sri(data, pkg.integrity.split('-', 1)[0])} from {url}"
        )
    CACHE.mkdir(exist_ok=True)
    tmp = pkg.cache_path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(pkg.cache_path)
    return data


def members(pkg: Package, data: bytes) -> dict[str, bytes]:
    """The selected regular files of the tarball, keyed by their path under ``pkg.dest``."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for info in tar.getmembers():
            if not info.isfile():
                continue
            path = posixpath.normpath(info.name)
            if path.startswith(("/", "..")) or "/../" in f"/{path}/":
                raise SystemExit(f"{pkg.name}: refusing unsafe path {info.name!r} in the tarball")
            if not path.startswith("package/"):
                continue
            path = path[len("package/"):]
            if path in _LICENCES:
                rel = path
            elif path.startswith(pkg.strip) and pkg.select(path[len(pkg.strip):]):
                rel = path[len(pkg.strip):]
            else:
                continue
            extracted = tar.extractfile(info)
            assert extracted is not None  # a regular file
            out[rel] = extracted.read()
    if not out:
        raise SystemExit(f"{pkg.name}@{pkg.version}: no files selected; check its Package entry")
    return out


def manifest_entry(pkg: Package) -> dict[str, str]:
    return {"name": pkg.name, "version": pkg.version, "integrity": pkg.integrity}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def problems(pkg: Package) -> list[str]:
    """What is wrong with ``book/_static/vendor/<dest>/`` (empty when it is up to date).

    The manifest must name this package's pinned version and integrity, and every file it
    lists must be there with the sha256 recorded when it was unpacked from the verified
    tarball; a file the manifest does not list is reported too.
    """
    target = DEST / pkg.dest
    manifest = target / MANIFEST
    if not manifest.is_file():
        return [f"{pkg.name}@{pkg.version} is not unpacked in {DEST.relative_to(ROOT)}"]
    try:
        recorded = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return [f"{manifest.relative_to(ROOT)} is not valid JSON"]
    if {k: recorded.get(k) for k in ("name", "version", "integrity")} != manifest_entry(pkg):
        return [f"{manifest.relative_to(ROOT)} does not record {pkg.name}@{pkg.version} "
                f"with its pinned integrity"]
    files = recorded.get("files")
    if not isinstance(files, dict) or not files:
        return [f"{manifest.relative_to(ROOT)} records no sha256 per file (an old manifest)"]
    out = []
    for rel, digest in sorted(files.items()):
        path = target / rel
        if not path.is_file():
            out.append(f"{path.relative_to(ROOT)} is missing")
        elif sha256(path.read_bytes()) != digest:
            out.append(f"{path.relative_to(ROOT)} does not match its recorded sha256")
    listed = set(files) | {MANIFEST}
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        if path.relative_to(target).as_posix() not in listed:
            out.append(f"{path.relative_to(ROOT)} is not in the manifest")
    return out


def up_to_date(pkg: Package) -> bool:
    return not problems(pkg)


def unpack(pkg: Package, files: dict[str, bytes]) -> None:
    """Replace ``book/_static/vendor/<dest>/`` with ``files`` and write its manifest, which
    records the sha256 of every file as it came out of the verified tarball."""
    target = DEST / pkg.dest
    if target.exists():
        shutil.rmtree(target)
    for rel, content in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    entry = manifest_entry(pkg) | {"files": {rel: sha256(files[rel]) for rel in sorted(files)}}
    (target / MANIFEST).write_text(json.dumps(entry, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless every package is unpacked at its pinned version")
    args = parser.parse_args(argv)
    registry = os.environ.get("NPM_CONFIG_REGISTRY") or os.environ.get("npm_config_registry") \
        or "https://registry.npmjs.org"

    found = {pkg.name: problems(pkg) for pkg in PACKAGES}
    stale = [pkg for pkg in PACKAGES if found[pkg.name]]
    if args.check:
        for pkg in stale:
            print("\n".join(found[pkg.name]))
        return 1 if stale else 0
    for pkg in stale:
        files = members(pkg, fetch(pkg, registry))
        unpack(pkg, files)
        size = sum(len(b) for b in files.values()) / 2**20
        print(f"   {pkg.name}@{pkg.version}: {len(files)} files, {size:.1f} MiB "
              f"-> {(DEST / pkg.dest).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
