"""A real S3-protocol server for tests: moto's standalone `moto_server`, in its own process on a
free loopback port, with a bucket. It can be stopped and started again on the same port (its
objects are in memory: a restart is an empty store)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3

from tests.support.services import free_port

# Any credentials do for moto; real ones are never needed (and never used) by the tests.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "embedtune-test",
    "AWS_SECRET_ACCESS_KEY": "embedtune-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    def __init__(self, log_dir: Path, bucket: str = "embedtune") -> None:
        self.port = free_port()
        self.bucket = bucket
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"moto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this store (plus a prefix of the caller's choosing)."""
        return {**S3_ENV, "EMBEDTUNE_S3_ENDPOINT_URL": self.endpoint_url}

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.session.Session(
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint_url)

    def start(self, *, create_bucket: bool = True) -> S3Server:
        moto = Path(sys.executable).with_name("moto_server")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **S3_ENV},
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log_path.read_text()
                    raise RuntimeError(f"moto_server did not start: {log}") from exc
                time.sleep(0.1)
        if create_bucket:
            self.client().create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def keys(self, prefix: str = "") -> list[str]:
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def pending_multipart_uploads(self) -> list[str]:
        answer = self.client().list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in answer.get("Uploads", [])]
