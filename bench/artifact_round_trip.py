"""A file of SIZE bytes written at PATH, logged as an artifact and read back by the trainwatch
client, as a script on a training machine does; prints one JSON line: whether the file came
back with its digest, the seconds each way, and how much the process's peak memory grew.

    python bench/artifact_round_trip.py PATH SIZE [PROJECT]  (bench/artifacts.py and the suite run it)
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import trainwatch


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(path: Path, size: int, project: str) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 16 * 2**20))
            out.write(piece)
            left -= len(piece)
    before = peak_mb()
    with trainwatch.init(project=project, name="round trip") as run:
        started = time.perf_counter()
        logged = run.log_artifact(path, name="big", type="dataset")
        upload_s = time.perf_counter() - started
        started = time.perf_counter()
        folder = run.use_artifact("big:latest")
        download_s = time.perf_counter() - started
    assert logged is not None
    digest = hashlib.sha256()
    with open(folder / path.name, "rb") as back:
        while piece := back.read(2**20):
            digest.update(piece)
    print(
        json.dumps(
            {
                "same_digest": digest.hexdigest() == logged.files[0]["digest"],
                "upload_s": upload_s,
                "download_s": download_s,
                "sent_bytes": logged.sent,
                "rss_growth_mb": peak_mb() - before,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "vision")
