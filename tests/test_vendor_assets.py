"""scripts/vendor_assets.py: the manifest written at unpack time records a sha256 per file, and
--check verifies every vendored file against it (a tampered, missing or added file fails).
Runs offline on a small tarball made here, served from the script's cache."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import vendor_assets  # noqa: E402


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def vendored(tmp_path, monkeypatch):
    """A fake package, pinned by the integrity of a tarball already in the cache."""
    data = _tarball({"dist/lib.js": b"console.log(1);\n", "dist/font.woff": b"\x00\x01font",
                     "dist/skip.map": b"{}", "LICENSE": b"MIT\n"})
    pkg = vendor_assets.Package(
        name="@fake/lib", version="1.0.0", integrity=vendor_assets.sri(data), dest="lib",
        strip="dist/", select=lambda p: not p.endswith(".map"),
    )
    monkeypatch.setattr(vendor_assets, "ROOT", tmp_path)
    monkeypatch.setattr(vendor_assets, "CACHE", tmp_path / "_vendor")
    monkeypatch.setattr(vendor_assets, "DEST", tmp_path / "book" / "_static" / "vendor")
    monkeypatch.setattr(vendor_assets, "PACKAGES", (pkg,))
    monkeypatch.setattr(vendor_assets.urllib.request, "urlopen", _no_network)
    pkg.cache_path.parent.mkdir(parents=True)
    pkg.cache_path.write_bytes(data)
    assert vendor_assets.main([]) == 0
    return tmp_path / "book" / "_static" / "vendor" / "lib"


def _no_network(*args, **kwargs):
    raise AssertionError("the test must not reach the network")


def test_manifest_records_a_sha256_per_unpacked_file(vendored):
    manifest = json.loads((vendored / "manifest.json").read_text())
    assert set(manifest["files"]) == {"lib.js", "font.woff", "LICENSE"}
    assert manifest["files"]["lib.js"] == vendor_assets.sha256(b"console.log(1);\n")
    assert vendor_assets.main(["--check"]) == 0


@pytest.mark.parametrize("change", ["tamper", "truncate", "remove", "add", "old-manifest"])
def test_check_fails_on_a_changed_file_and_a_run_restores_it(vendored, capsys, change):
    if change == "tamper":
        (vendored / "lib.js").write_bytes(b"fetch('https://evil.example');\n")
    elif change == "truncate":
        (vendored / "font.woff").write_bytes(b"\x00")
    elif change == "remove":
        (vendored / "LICENSE").unlink()
    elif change == "add":
        (vendored / "extra.js").write_text("alert(1)")
    else:  # a manifest from before hashes were recorded: a list of names
        manifest = json.loads((vendored / "manifest.json").read_text())
        manifest["files"] = sorted(manifest["files"])
        (vendored / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert vendor_assets.main(["--check"]) == 1
    said = capsys.readouterr().out
    expected = {"tamper": "lib.js does not match its recorded sha256",
                "truncate": "font.woff does not match", "remove": "LICENSE is missing",
                "add": "extra.js is not in the manifest", "old-manifest": "no sha256 per file"}
    assert expected[change] in said
    assert vendor_assets.main([]) == 0  # unpacked again from the verified cached tarball
    assert vendor_assets.main(["--check"]) == 0
    assert (vendored / "lib.js").read_bytes() == b"console.log(1);\n"
    assert not (vendored / "extra.js").exists()
