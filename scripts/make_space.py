"""Make the commit to push to a Hugging Face Space: a new repository in OUT holding one commit (no history)
of exactly the files the app needs, taken from a commit of this repository, its binaries in Git LFS.

    python scripts/make_space.py --out /tmp/pose3dfr-space [--ref HEAD]
    git -C /tmp/pose3dfr-space push --force https://huggingface.co/spaces/USER/SPACE main

The Hub refuses plain-git files over 10 MiB (the checkpoints are 22-28 MB) and binary files outside LFS, and
this repository's history holds every checkpoint ever published (282 MiB of packs by `git count-objects -vH` when this was written), so it cannot be pushed as it
is. This repository's history is never changed: the Space repository is new, its single commit has no parent.
Only tracked files of the chosen commit go in (never run folders or checkpoints published from the Train tab,
which are untracked). Needs git-lfs (`apt-get install git-lfs`); it is enabled for OUT only (`--local`).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the app needs: the entry point, the Space's front matter (README) and its Debian and Python requirements,
# the package, the shipped assets (detector and landmark models, photos, NOTICE), the checkpoints offered
# (and the head-pose net the detector uses), the Train tab's recipes, and the LFS rules.
SPACE_PATHS = (".gitattributes", "README.md", "app.py", "packages.txt", "requirements.txt", "pose3dfr", "assets",
               "checkpoints", "configs")
# Suffixes never shipped from those folders (caches, editor files).
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej")
# The Hub's largest plain-git file (10 MiB): anything bigger must be an LFS pointer in the commit.
HUB_PLAIN_FILE_LIMIT = 10 * 1024 * 1024


def git(*args: str, cwd: Path = ROOT, data: bytes | None = None) -> bytes:
    """Output of `git args...` in `cwd`; exits with git's message on failure."""
    done = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def space_files(ref: str) -> list[str]:
    """Tracked files of `ref` that the Space gets."""
    listed = git("ls-tree", "-r", "--name-only", ref, "--", *SPACE_PATHS).decode().splitlines()
    return [path for path in listed if not path.endswith(SKIPPED_SUFFIXES)]


def export_tree(ref: str, files: list[str], out: Path) -> None:
    """Write `files` as they are in `ref` into `out` (git archive: the committed bytes, not the working tree)."""
    archive = git("archive", "--format=tar", ref, "--", *files)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")


def commit_space(out: Path, ref: str) -> str:
    """Initialise `out` as a repository with LFS on, commit everything once; returns the commit id."""
    source = git("rev-parse", "--short=12", ref).decode().strip()
    git("init", "-q", "-b", "main", cwd=out)
    git("lfs", "install", "--local", cwd=out)
    git("add", "-A", cwd=out)
    name = git("config", "user.name", cwd=ROOT).decode().strip() if _has_config("user.name") else "pose3dfr"
    email = git("config", "user.email", cwd=ROOT).decode().strip() if _has_config("user.email") else "pose3dfr@localhost"
    git("-c", f"user.name={name}", "-c", f"user.email={email}", "commit", "-q", "-m",
        f"pose3dfr Space from commit {source}", cwd=out)
    return git("rev-parse", "HEAD", cwd=out).decode().strip()


def _has_config(key: str) -> bool:
    return subprocess.run(["git", "config", key], cwd=ROOT, capture_output=True).returncode == 0


def plain_blobs_over_limit(out: Path) -> list[str]:
    """Files of the Space commit stored as plain git blobs over the Hub's limit (must be empty)."""
    listing = git("ls-tree", "-r", "-l", "HEAD", cwd=out).decode().splitlines()
    return [line.split("\t", 1)[1] for line in listing if int(line.split()[3]) > HUB_PLAIN_FILE_LIMIT]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="new folder for the Space repository (must not exist or be empty)")
    parser.add_argument("--ref", default="HEAD", help="commit of this repository to take the files from (default HEAD)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty; give a new folder")
    if subprocess.run(["git", "lfs", "version"], capture_output=True).returncode != 0:
        sys.exit("git-lfs is needed (apt-get install git-lfs): the Hub takes the checkpoints only through LFS")
    out.mkdir(parents=True, exist_ok=True)
    files = space_files(args.ref)
    export_tree(args.ref, files, out)
    commit = commit_space(out, args.ref)
    too_big = plain_blobs_over_limit(out)
    if too_big:
        sys.exit(f"files over 10 MiB outside LFS (add their pattern to .gitattributes): {', '.join(too_big)}")
    lfs = git("lfs", "ls-files", "--name-only", cwd=out).decode().split()
    print(f"{out}: commit {commit[:12]} (no parent), {len(files)} files, {len(lfs)} in LFS. Push it with\n"
          f"  git -C {out} push --force https://huggingface.co/spaces/USER/SPACE main")
    return 0


if __name__ == "__main__":
    sys.exit(main())
