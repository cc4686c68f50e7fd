"""trainwatch sync [FOLDER ...]: upload runs recorded offline, or whatever a run could not send
before its script ended. Without a folder: every run waiting in TRAINWATCH_DIR
(~/.trainwatch). The server and the token come from TRAINWATCH_URL and TRAINWATCH_TOKEN."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trainwatch.run import send_kept_artifacts
from trainwatch.transport import Connection, Refused, Spool, Unreachable, Uploader, home


def sync(folders: list[Path], url: str, token: str) -> int:
    connection = Connection(url, token)
    failures = 0
    for folder in folders:
        spool = Spool(folder)
        pending = len(spool.pending())
        uploader = Uploader(spool, connection)
        try:
            done = uploader.upload()
        except (Unreachable, Refused) as error:
            print(f"{folder}: not uploaded: {error}", file=sys.stderr)
            failures += 1
            continue
        if not done or spool.pending():
            print(f"{folder}: the server wants payloads in another order; run sync again", file=sys.stderr)
            failures += 1
            continue
        artifacts = len(spool.artifacts())
        if artifacts and not send_kept_artifacts(spool, connection, spool.state()["run_id"]):
            print(f"{folder}: its artifacts were not all sent; run sync again", file=sys.stderr)
            failures += 1
            continue
        url_of_run = spool.state()["url"]
        spool.remove()
        sent = f" and {artifacts} artifact{'s' if artifacts != 1 else ''}" if artifacts else ""
        print(f"{folder}: {pending} payloads{sent} uploaded: {url_of_run}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainwatch", description="Trainwatch's client")
    commands = parser.add_subparsers(dest="command", required=True)
    sync_parser = commands.add_parser(
        "sync",
        help="upload runs recorded offline or left unsent",
        description="Upload runs recorded offline (TRAINWATCH_MODE=offline), or what a "
        "run could not send before its script ended.",
    )
    sync_parser.add_argument("folders", nargs="*", type=Path, help="run folders (default: all in TRAINWATCH_DIR)")
    sync_parser.add_argument("--url", default=os.environ.get("TRAINWATCH_URL"), help="default: TRAINWATCH_URL")
    sync_parser.add_argument("--token", default=os.environ.get("TRAINWATCH_TOKEN"), help="default: TRAINWATCH_TOKEN")
    args = parser.parse_args(argv)
    if not args.url or not args.token:
        parser.error("--url and --token, or TRAINWATCH_URL and TRAINWATCH_TOKEN, say where to upload")
    folders = args.folders or sorted(path for path in (home() / "runs").glob("*") if (path / "run.json").exists())
    missing = [str(folder) for folder in folders if not (folder / "run.json").exists()]
    if missing:
        parser.error(f"not a run folder (no run.json): {', '.join(missing)}")
    if not folders:
        print(f"nothing to upload in {home() / 'runs'}")
        return 0
    return sync(folders, args.url, args.token)


if __name__ == "__main__":
    sys.exit(main())
