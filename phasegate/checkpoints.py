"""Checkpoint storage: where the ledger (phasegate.ledger) and the step tasks' results live.

Storage (`executor.result_storage`) is a local folder (default: `results/` under
PHASEGATE_HOME) or `s3://BUCKET/PREFIX`, read and written through prefect-aws's S3Bucket with
the environment's region, profile or role, and endpoint. Every process of a migration (the
CLI, a worker on another machine, a run resumed after a suspended approval) must see the same
storage. The step task is pointed at it by `task_result_storage` (see tasks/runner.py); a
temporary settings context entered inside a running flow does not move its tasks' results
(Prefect 3.9.1 fixes a flow's result store when the flow starts).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.settings import (
    PREFECT_RESULTS_LOCAL_STORAGE_PATH,
    PREFECT_RESULTS_PERSIST_BY_DEFAULT,
    temporary_settings,
)

from phasegate.config import EnvironmentConfig
from phasegate.errors import ConfigError
from phasegate.home import phasegate_home

if TYPE_CHECKING:
    from prefect_aws.s3 import S3Bucket


@dataclass(frozen=True)
class StorageLocation:
    """Where an environment's checkpoints live: a local folder, or an S3 bucket and prefix."""

    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def __str__(self) -> str:
        if self.is_s3:
            return f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return str(self.path)


def storage_location(config: EnvironmentConfig) -> StorageLocation:
    """Parse `executor.result_storage`; a ConfigError names the field when it is unusable."""
    configured = config.executor.result_storage
    if not configured:
        return StorageLocation(path=phasegate_home() / "results")
    if configured.startswith("s3://"):
        bucket, _, prefix = configured.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(
                f"{config.name}: executor.result_storage: {configured!r} names no bucket "
                "(expected s3://BUCKET/PREFIX)"
            )
        return StorageLocation(bucket=bucket, prefix=prefix.strip("/"))
    if "://" in configured and not configured.startswith("file://"):
        raise ConfigError(
            f"{config.name}: executor.result_storage: {configured!r}: expected a local folder, "
            "file://PATH or s3://BUCKET/PREFIX"
        )
    return StorageLocation(path=Path(configured.removeprefix("file://")).expanduser())


def storage_path(config: EnvironmentConfig) -> Path:
    """The local folder holding checkpoints for `config`'s environment (created on demand).

    With S3 storage: a local scratch folder for results that are not checkpoints.
    """
    location = storage_location(config)
    path = location.path or phasegate_home() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def block_name(environment: str) -> str:
    """The saved storage block of an environment, e.g. 'phasegate-checkpoints-acme-prod'."""
    return f"phasegate-checkpoints-{environment}"


def s3_bucket(config: EnvironmentConfig) -> "S3Bucket":
    """prefect-aws's S3Bucket (unsaved) for the environment's S3 checkpoint storage."""
    from prefect_aws import AwsClientParameters, AwsCredentials
    from prefect_aws.s3 import S3Bucket

    location = storage_location(config)
    if not location.is_s3:
        raise ConfigError(f"{config.name}: executor.result_storage is not an s3:// location")
    keys: dict[str, Any] = {}
    if (
        config.aws.endpoint_url
        and boto3.Session(profile_name=config.aws.profile).get_credentials() is None
    ):
        # As phasegate.aws does: a local stand-in (the sandbox) needs some credentials.
        keys = {
            "aws_access_key_id": "phasegate-sandbox",
            "aws_secret_access_key": "phasegate-sandbox",
        }
    credentials = AwsCredentials(
        **keys,
        region_name=config.aws.region,
        profile_name=config.aws.profile,
        assume_role_arn=config.aws.role_arn,
        aws_client_parameters=AwsClientParameters(endpoint_url=config.aws.endpoint_url),
    )
    assert location.bucket is not None
    return S3Bucket(
        bucket_name=location.bucket, bucket_folder=location.prefix, credentials=credentials
    )


def storage_block(config: EnvironmentConfig) -> WritableFileSystem:
    """The environment's checkpoint storage as a Prefect filesystem block (not saved)."""
    location = storage_location(config)
    if location.is_s3:
        return s3_bucket(config)
    return LocalFileSystem(basepath=str(storage_path(config)))


def task_result_storage(config: EnvironmentConfig) -> Path | WritableFileSystem:
    """What to give a task's `result_storage` so its results land in the checkpoint storage.

    A local folder is given as a Path. Prefect only accepts a *saved* block there, so S3 is
    saved as the block `phasegate-checkpoints-ENV` (overwritten each time, so it always
    matches the config; it holds no secret: credentials come from the worker's standard
    chain, the profile or the role).
    """
    location = storage_location(config)
    if not location.is_s3:
        return storage_path(config)
    block = s3_bucket(config)
    block.save(block_name(config.name), overwrite=True)
    return block


@contextmanager
def checkpoint_storage(config: EnvironmentConfig) -> Iterator[Path]:
    """Point Prefect's default result storage at the checkpoint folder for flows started inside.

    Prefect reads its settings once, at import, and fixes a flow's result store when the flow
    starts: this must wrap the flow call (it does nothing for a flow already running). The
    step tasks do not depend on it: they carry `task_result_storage` themselves.
    """
    path = storage_path(config)
    with temporary_settings(
        {PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(path), PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}
    ):
        yield path


class _LocalFiles:
    """The ledger's small JSON files in a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, name: str) -> str | None:
        path = self.root / name
        return path.read_text() if path.is_file() else None

    def write(self, name: str, text: str) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def listing(self, folder: str) -> list[tuple[str, datetime]]:
        """(file name, modified) of the files directly in `folder`."""
        path = self.root / folder
        if not path.is_dir():
            return []
        return [
            (p.name, datetime.fromtimestamp(p.stat().st_mtime, UTC))
            for p in path.iterdir()
            if p.is_file()
        ]


class _S3Files:
    """The same small files in the S3 bucket and prefix of the step results."""

    def __init__(self, bucket: "S3Bucket") -> None:
        self.bucket = bucket
        self.client: Any = bucket.credentials.get_s3_client()

    def _key(self, name: str) -> str:
        return self.bucket._resolve_path(name)

    def read(self, name: str) -> str | None:
        try:
            body = self.client.get_object(Bucket=self.bucket.bucket_name, Key=self._key(name))
        except self.client.exceptions.NoSuchKey:
            return None
        return body["Body"].read().decode()

    def write(self, name: str, text: str) -> None:
        self.client.put_object(
            Bucket=self.bucket.bucket_name, Key=self._key(name), Body=text.encode()
        )

    def listing(self, folder: str) -> list[tuple[str, datetime]]:
        prefix = self._key(folder).rstrip("/") + "/"
        found: list[tuple[str, datetime]] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket.bucket_name, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                found.append((item["Key"].removeprefix(prefix), item["LastModified"]))
        return found


StoredFiles = _LocalFiles | _S3Files


def stored_files(config: EnvironmentConfig) -> StoredFiles:
    """The environment's checkpoint storage as small named files (local folder or S3)."""
    location = storage_location(config)
    if location.is_s3:
        return _S3Files(s3_bucket(config))
    return _LocalFiles(storage_path(config))
