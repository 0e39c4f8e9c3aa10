"""The Pages workflow's supply chain: actions pinned to full commit SHAs (tag in a comment),
checkout without a persisted token, no unpinned container, the PyTorch index serving torch
alone, and the published chapters pinned to the commit being built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
TEXT = WORKFLOW.read_text()
DOC = yaml.safe_load(TEXT)
STEPS = [(name, step) for name, job in DOC["jobs"].items() for step in job.get("steps", [])]
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.MULTILINE)


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_tag():
    found = USES.findall(TEXT)
    assert found, "the workflow uses no action?"
    for ref, comment in found:
        action, _, version = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", version), f"{action} is not pinned to a SHA: {ref}"
        assert re.fullmatch(r"\s*# v\d+(\.\d+)*", comment), f"{action}: name the tag, got {comment!r}"


def test_checkout_keeps_no_credentials():
    checkouts = [s for _, s in STEPS if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False


def test_no_container_unless_pinned_by_digest():
    for name, job in DOC["jobs"].items():
        container = job.get("container")
        if container is not None:
            image = container["image"] if isinstance(container, dict) else container
            assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"job {name}: image {image} unpinned"


def test_the_pytorch_index_serves_torch_alone():
    assert "PIP_EXTRA_INDEX_URL" not in TEXT and "extra-index-url" not in TEXT
    for name, step in STEPS:
        run = step.get("run", "")
        for command in run.replace("\\\n", " ").splitlines():
            if "--index-url" in command:
                assert "--no-deps" in command, f"job {name}: {command!r} resolves deps there"
                packages = [w for w in command.split() if not w.startswith("-") and "=" not in w]
                tail = packages[packages.index("install") + 1:]
                tail = [w for w in tail if w not in ('"$TORCH_INDEX_URL"', "constraints.txt")]
                assert tail == ["torch"], f"job {name}: the torch index installs {tail}"


def test_the_published_chapters_are_pinned_to_the_commit_being_built():
    build = [s.get("run", "") for s in DOC["jobs"]["build"]["steps"]]
    pin = next(i for i, r in enumerate(build) if "sync_notebooks.py --ref" in r)
    book = next(i for i, r in enumerate(build) if "make book" in r)
    assert pin < book
    assert '"$GITHUB_SHA"' in build[pin]


@pytest.mark.parametrize("job", ["test", "build", "deploy"])
def test_jobs_keep_least_privilege(job):
    assert DOC["permissions"] == {"contents": "read"}
    extra = DOC["jobs"][job].get("permissions", {})
    assert set(extra) <= {"pages", "id-token"}
