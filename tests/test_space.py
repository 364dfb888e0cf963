"""The repository as a Hugging Face Space takes it (issue 32, item 14: the shipped checkpoints are 22-28 MB and
the history 282 MiB of packs): scripts/make_space.py makes a parentless commit of exactly the app's files, with
scripts/space.gitattributes as its .gitattributes and every file the Hub refuses in plain git (over 10 MiB, or a
binary type) as a Git LFS pointer whose object is in place, without git-lfs on the machine; the README's Space
front matter names the Gradio installed here. This repository itself routes nothing to LFS."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from pose3dfr.paths import PROJECT_ROOT

pytestmark = pytest.mark.xdist_group("space")  # one worker builds the module's Space repository once
HUB_PLAIN_FILE_LIMIT = 10 * 1024 * 1024
# Binary types the Hub wants in LFS whatever their size (images, models, archives).
BINARY_SUFFIXES = (".safetensors", ".onnx", ".task", ".tflite", ".npy", ".npz", ".jpg", ".jpeg", ".png", ".webp",
                   ".gif", ".bmp", ".tif", ".tiff", ".zip", ".gz")
SPACE_PATHS = ("README.md", "app.py", "packages.txt", "requirements.txt", "pose3dfr", "assets", "checkpoints",
               "configs")
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej")  # caches and editor files never shipped


def _git(*args: str, cwd=PROJECT_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _blob(ref_path: str, cwd=PROJECT_ROOT) -> bytes:
    return subprocess.run(["git", "cat-file", "blob", ref_path], cwd=cwd, capture_output=True, check=True).stdout


def _run_make_space(out, tmp_path):
    """make_space.py with `git` but no git-lfs on PATH (as on CI, whatever this machine has)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "git").exists():
        (bin_dir / "git").symlink_to(shutil.which("git"))
    env = {**os.environ, "PATH": str(bin_dir)}
    return subprocess.run([sys.executable, "scripts/make_space.py", "--out", str(out)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The Space repository made from HEAD, and make_space's run."""
    tmp_path = tmp_path_factory.mktemp("space")
    out = tmp_path / "space"
    done = _run_make_space(out, tmp_path)
    assert done.returncode == 0, done.stderr
    return out, done, tmp_path


def test_make_space_commits_exactly_the_app_files_without_history(space):
    import gradio

    out, done, tmp_path = space
    assert _git("rev-list", "--parents", "main", cwd=out).split() == [_git("rev-parse", "HEAD", cwd=out).strip()]
    files = _git("ls-tree", "-r", "--name-only", "HEAD", cwd=out).splitlines()
    app_files = _git("ls-tree", "-r", "--name-only", "HEAD", "--", *SPACE_PATHS).splitlines()
    assert sorted(files) == sorted([".gitattributes", *(p for p in app_files if not p.endswith(SKIPPED_SUFFIXES))])
    assert "checkpoints/sface.safetensors" in files and "assets/face_landmarker.task" in files
    assert (out / ".gitattributes").read_bytes() == (PROJECT_ROOT / "scripts/space.gitattributes").read_bytes()
    assert _git("show", "HEAD:.gitattributes", cwd=out) == (out / ".gitattributes").read_text()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in (out / ".gitattributes").read_text()
    front = (out / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in front and "app_file: app.py" in front
    assert f"sdk_version: {gradio.__version__}" in front  # the Space installs the Gradio the app was tested with
    assert "lfs install --local" in done.stdout  # git-lfs was hidden: the user is told pushing needs it
    again = _run_make_space(out, tmp_path)
    assert again.returncode != 0 and "not empty" in again.stderr


def test_every_file_the_hub_refuses_in_plain_git_is_an_lfs_pointer_with_its_object(space):
    out = space[0]
    listing = [line.split(None, 4) for line in _git("ls-tree", "-r", "-l", "HEAD", cwd=out).splitlines()]
    here = _git("ls-tree", "-r", "-l", "HEAD").splitlines()
    source = {entry[4]: entry for entry in (line.split(None, 4) for line in here)}  # path -> mode, type, blob, size
    paths = [entry[4] for entry in listing if entry[4] != ".gitattributes"]
    attributes = _git("check-attr", "filter", "--", *paths, cwd=out).splitlines()
    routed = {line.split(": filter: ")[0] for line in attributes if line.endswith(": filter: lfs")}
    must = {p for p in paths if p.lower().endswith(BINARY_SUFFIXES) or int(source[p][3]) > HUB_PLAIN_FILE_LIMIT}
    assert any(int(source[p][3]) > HUB_PLAIN_FILE_LIMIT for p in must) and any(p.endswith(".jpg") for p in must)
    assert must <= routed, f"files the Hub refuses outside LFS: {sorted(must - routed)}"
    for mode, _, blob, size, path in listing:
        if path == ".gitattributes":
            continue
        assert mode == source[path][0]
        if path not in routed:  # plain: the very blob of this repository, under the Hub's limit
            assert blob == source[path][2] and int(size) <= HUB_PLAIN_FILE_LIMIT, path
            continue
        data = _blob(f"HEAD:{path}")
        oid = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n"
        assert _blob(blob, cwd=out).decode() == pointer, path
        assert (out / ".git/lfs/objects" / oid[0:2] / oid[2:4] / oid).read_bytes() == data, path
        assert (out / path).read_bytes() == data, path  # the working tree holds the real file


def test_this_repository_routes_nothing_to_lfs():
    """Where git-lfs is configured system-wide (Debian's git-lfs package does so), LFS rules here would turn the
    shipped checkpoints into pointers in this repository's next `git add -A`, and every checkout without an LFS
    server would break: the rules belong to the Space repository only (scripts/space.gitattributes)."""
    tracked = [p for p in _git("ls-files").splitlines() if p.split("/")[-1] == ".gitattributes"]
    on_disk = [".gitattributes"] if (PROJECT_ROOT / ".gitattributes").exists() else []
    for path in set(tracked + on_disk):
        assert "filter=lfs" not in (PROJECT_ROOT / path).read_text(), (
            f"{path} routes files to Git LFS: LFS rules go in scripts/space.gitattributes (the docstring says why)")
