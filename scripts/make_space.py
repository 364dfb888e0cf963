"""Make the commit to push to a Hugging Face Space: a new repository in OUT holding one commit (no history)
of exactly the files the app needs, taken from a commit of this repository, its binaries as Git LFS pointers.

    python scripts/make_space.py --out /tmp/pose3dfr-space [--ref HEAD]
    git -C /tmp/pose3dfr-space lfs install --local      # only if make_space said git-lfs was not found
    git -C /tmp/pose3dfr-space push --force https://huggingface.co/spaces/USER/SPACE main

The Hub refuses plain-git files over 10 MiB (the checkpoints are 22-28 MB) and binary files outside LFS, and
this repository's history holds every checkpoint ever published (282 MiB of packs by `git count-objects -vH` when
this was written), so it cannot be pushed as it is. This repository's history is never changed: the Space
repository is new, its single commit has no parent. Only tracked files of the chosen commit go in (never run
folders or checkpoints published from the Train tab, which are untracked), plus scripts/space.gitattributes as
its `.gitattributes`. Building needs no git-lfs: every file those rules route to LFS is committed as the LFS
pointer (spec v1) and its bytes stored where git-lfs looks for them (.git/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>).
Pushing needs git-lfs (its pre-push hook uploads those objects): when git-lfs is installed, it is enabled for
OUT only (`git lfs install --local`); otherwise install it and run that command in OUT before pushing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the app needs: the entry point, the Space's front matter (README) and its Debian and Python requirements,
# the package, the shipped assets (detector and landmark models, photos, NOTICE), the checkpoints offered
# (and the head-pose net the detector uses), and the Train tab's recipes.
SPACE_PATHS = ("README.md", "app.py", "packages.txt", "requirements.txt", "pose3dfr", "assets", "checkpoints",
               "configs")
# The Space's .gitattributes (its LFS rules); never this repository's own (see the file's header).
LFS_RULES = Path(__file__).resolve().with_name("space.gitattributes")
# Suffixes never shipped from those folders (caches, editor files).
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej")
# The Hub's largest plain-git file (10 MiB): anything bigger must be an LFS pointer in the commit.
HUB_PLAIN_FILE_LIMIT = 10 * 1024 * 1024
# Git LFS pointer spec v1: these three lines in this order, byte for byte as `git lfs pointer` writes them.
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
# Regular files only: a symlink or submodule would not be the bytes the app runs.
FILE_MODES = ("100644", "100755")


def git(*args: str, cwd: Path = ROOT, data: bytes | None = None) -> bytes:
    """Output of `git args...` in `cwd`; exits with git's message on failure."""
    done = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def space_files(ref: str) -> dict[str, str]:
    """Tracked files of `ref` that the Space gets: path -> git file mode."""
    modes = {}
    for entry in git("ls-tree", "-r", "-z", ref, "--", *SPACE_PATHS).decode().split("\0"):
        if not entry:
            continue
        info, path = entry.split("\t", 1)
        mode = info.split()[0]
        if path.endswith(SKIPPED_SUFFIXES):
            continue
        if mode not in FILE_MODES:
            sys.exit(f"{path} is not a regular file in {ref} (mode {mode}); the Space takes regular files only")
        modes[path] = mode
    return modes


def export_tree(ref: str, files: list[str], out: Path) -> None:
    """Write `files` as they are in `ref` into `out` (git archive: the committed bytes, not the working tree)."""
    archive = git("archive", "--format=tar", ref, "--", *files)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")


def lfs_routed(out: Path, files: list[str]) -> set[str]:
    """Files that the Space's .gitattributes (already in `out`) routes to LFS, as git itself reads the rules."""
    answer = git("check-attr", "-z", "--stdin", "filter", cwd=out, data="\0".join(files).encode() + b"\0")
    fields = answer.decode().split("\0")  # path, attribute, value, path, ...
    return {fields[i] for i in range(0, len(fields) - 2, 3) if fields[i + 2] == "lfs"}


def lfs_pointer(path: Path) -> tuple[bytes, str]:
    """The LFS pointer of the file at `path` and its oid (sha256 of the bytes); an empty file is its own pointer."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    size = path.stat().st_size
    if size == 0:  # the spec: empty files pass through LFS unchanged
        return b"", digest.hexdigest()
    return LFS_POINTER.format(oid=digest.hexdigest(), size=size).encode(), digest.hexdigest()


def store_lfs_object(git_dir: Path, path: Path, oid: str) -> None:
    """Copy the file at `path` to git-lfs's local object store of the repository at `git_dir`."""
    target = git_dir / "lfs" / "objects" / oid[0:2] / oid[2:4] / oid
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)


def plain_files_over_limit(out: Path, files: list[str], routed: set[str]) -> list[str]:
    """Files that would be plain git blobs over the Hub's limit (must be empty)."""
    return [p for p in files if p not in routed and (out / p).stat().st_size > HUB_PLAIN_FILE_LIMIT]


def commit_space(out: Path, ref: str, modes: dict[str, str], routed: set[str]) -> str:
    """Commit the files in `out` once, with no parent, those in `routed` as LFS pointers; returns the commit id.

    Built from blobs (hash-object, update-index, write-tree, commit-tree), so no clean filter ever runs: the
    result is the same whether or not git-lfs is installed or configured on this machine."""
    git_dir = Path(git("rev-parse", "--absolute-git-dir", cwd=out).decode().strip())
    blobs = {}
    for path in sorted(routed):
        pointer, oid = lfs_pointer(out / path)
        if pointer:
            store_lfs_object(git_dir, out / path, oid)
        blobs[path] = git("hash-object", "-w", "--stdin", cwd=out, data=pointer).decode().strip()
    plain = [p for p in modes if p not in routed]
    shas = git("hash-object", "-w", "--no-filters", "--stdin-paths", cwd=out, data="\n".join(plain).encode())
    blobs.update(zip(plain, shas.decode().split()))
    index = "".join(f"{modes[p]} {blobs[p]}\t{p}\0" for p in sorted(blobs))
    git("update-index", "--add", "-z", "--index-info", cwd=out, data=index.encode())
    tree = git("write-tree", cwd=out).decode().strip()
    source = git("rev-parse", "--short=12", ref).decode().strip()
    name = _config("user.name", "pose3dfr")
    email = _config("user.email", "pose3dfr@localhost")
    commit = git("-c", f"user.name={name}", "-c", f"user.email={email}", "commit-tree", tree, "-m",
                 f"pose3dfr Space from commit {source}", cwd=out).decode().strip()
    git("update-ref", "refs/heads/main", commit, cwd=out)
    return commit


def _config(key: str, default: str) -> str:
    """This repository's git setting `key`, or `default` when unset."""
    done = subprocess.run(["git", "config", key], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else default


def enable_lfs(out: Path) -> bool:
    """Turn git-lfs on for `out` only (filters and pre-push hook) when it is installed; False when it is not."""
    if shutil.which("git-lfs") is None:
        return False
    git("lfs", "install", "--local", cwd=out)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="new folder for the Space repository (must not exist or be empty)")
    parser.add_argument("--ref", default="HEAD", help="commit of this repository to take the files from (default HEAD)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty; give a new folder")
    modes = space_files(args.ref)
    out.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main", cwd=out)
    export_tree(args.ref, list(modes), out)
    shutil.copyfile(LFS_RULES, out / ".gitattributes")
    modes[".gitattributes"] = "100644"
    routed = lfs_routed(out, list(modes))
    too_big = plain_files_over_limit(out, list(modes), routed)
    if too_big:
        sys.exit(f"files over 10 MiB that no LFS rule matches (add their pattern to {LFS_RULES.relative_to(ROOT)}):"
                 f" {', '.join(too_big)}")
    commit = commit_space(out, args.ref, modes, routed)
    push = f"git -C {out} push --force https://huggingface.co/spaces/USER/SPACE main"
    print(f"{out}: commit {commit[:12]} (no parent), {len(modes)} files, {len(routed)} as LFS pointers "
          f"(their bytes in .git/lfs/objects).")
    if enable_lfs(out):
        print(f"git-lfs is enabled for {out} only (git lfs install --local). Push it with\n  {push}")
    else:
        print(f"git-lfs was not found: pushing needs it (its pre-push hook uploads the LFS objects). Install it "
              f"(apt-get install git-lfs), then\n  git -C {out} lfs install --local\n  {push}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
