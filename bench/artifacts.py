"""The artifact store's speed on loopback, and the client's memory, for both stores.

A file of random bytes is logged as an artifact by a script's client (bench/artifact_round_trip.py,
a process of its own) through a gunicorn server, then read back with use_artifact into an empty
cache: upload and download throughput, and how much the client's peak memory grew. The filesystem
store with 1 GiB; an S3-compatible server (moto's standalone server, which keeps objects in its
memory) with 256 MiB.

    python -m tracker.dev.launcher run -- bash -c 'python manage.py migrate && python bench/artifacts.py'
Ends with one line (the filesystem store's figures):
upload_mb_per_s=U download_mb_per_s=D rss_growth_mb=R
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from tracker.dev.launcher import web_server_command  # noqa: E402
from tracker.models import ApiToken, Project, Run  # noqa: E402

BUCKET = "trainwatch-bench"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def round_trip(store_env: dict[str, str], size: int, token: str, folder: Path) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(
        web_server_command(port),
        env={**os.environ, **store_env, "ALLOWED_HOSTS": "127.0.0.1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port)
        client_env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
        }
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "artifact_round_trip.py"),
                str(folder / "big.bin"),
                str(size),
                "bench",
            ],
            env={
                **client_env,
                "TRAINWATCH_URL": f"http://127.0.0.1:{port}",
                "TRAINWATCH_TOKEN": token,
                "TRAINWATCH_DIR": str(folder / "client"),
                "PYTHONPATH": str(ROOT),
            },
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.terminate()
        server.wait()
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["same_digest"], figures
    mib = size / 2**20
    return {**figures, "upload_mb_per_s": mib / figures["upload_s"], "download_mb_per_s": mib / figures["download_s"]}


def main() -> None:
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    Project.objects.get_or_create(name="bench")[0].members.add(user)
    _, token = ApiToken.issue(user, "bench/artifacts.py")
    results = {}
    with tempfile.TemporaryDirectory(prefix="trainwatch-bench-") as scratch:
        folder = Path(scratch)
        Run.objects.filter(project__name="bench", name="round trip").delete()
        results["filesystem"] = round_trip({"TRAINWATCH_ARTIFACTS_DIR": str(folder / "store")}, 2**30, token, folder)
        (folder / "big.bin").unlink()
        port = free_port()
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **S3_CREDENTIALS},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(port)
            import boto3

            endpoint = f"http://127.0.0.1:{port}"
            os.environ.update(S3_CREDENTIALS)
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            s3_env = {
                **S3_CREDENTIALS,
                "TRAINWATCH_ARTIFACTS_S3_BUCKET": BUCKET,
                "TRAINWATCH_ARTIFACTS_S3_ENDPOINT": endpoint,
            }
            (folder / "s3").mkdir()
            results["s3 (moto)"] = round_trip(s3_env, 2**28, token, folder / "s3")
        finally:
            moto.terminate()
            moto.wait()
    for store, figures in results.items():
        print(
            f"{store}: upload {figures['upload_mb_per_s']:.0f} MiB/s ({figures['upload_s']:.1f} s), "
            f"download {figures['download_mb_per_s']:.0f} MiB/s ({figures['download_s']:.1f} s), "
            f"client peak memory +{figures['rss_growth_mb']:.1f} MiB"
        )
    local = results["filesystem"]
    print(
        f"upload_mb_per_s={local['upload_mb_per_s']:.0f} download_mb_per_s={local['download_mb_per_s']:.0f} "
        f"rss_growth_mb={local['rss_growth_mb']:.1f}"
    )


if __name__ == "__main__":
    main()
