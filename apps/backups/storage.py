"""Where backup bytes go: a local directory or S3, behind one small interface.

``open_writer(key)`` returns a writer that takes the stream in pieces (``write``) and makes it
visible only on ``commit``; ``abort`` leaves nothing behind. S3 streams into a multipart
upload (no temporary file); a directory writes a hidden temporary file beside the final one
and renames it on commit (same filesystem: the rename is the atomic commit, not a copy).

``backup_key`` is the one place that builds keys, and it guarantees they stay under the
storage's prefix.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.text import slugify

from apps.backups.choices import StorageKind
from apps.backups.models import clean_prefix

if TYPE_CHECKING:
    from apps.backups.models import BackupStorage

MIB = 1024 * 1024


class StorageError(Exception):
    """The storage refused or could not be reached; the message says so for people."""


class UnsafeKey(StorageError):
    """A key that would leave its prefix or base directory."""


def backup_key(prefix: str, target_name: str, when: datetime) -> str:
    """``<prefix>/<target>/<YYYY>/<MM>/<target>_<YYYYmmdd_HHMMSS>.dump``: the only function
    that makes backup keys. The target's name is slugified, '..' is refused anywhere, and the
    result is checked to be a normalised path under the prefix."""
    if ".." in target_name or ".." in prefix:
        raise UnsafeKey("'..' is not allowed in a target name or a prefix.")
    try:
        prefix = clean_prefix(prefix)
    except ValidationError as exc:
        raise UnsafeKey(" ".join(exc.messages)) from None
    slug = slugify(target_name)
    if not slug:
        raise UnsafeKey(f"The target name {target_name!r} gives an empty key.")
    name = f"{slug}/{when:%Y}/{when:%m}/{slug}_{when:%Y%m%d_%H%M%S}.dump"
    key = f"{prefix}/{name}" if prefix else name
    if (
        posixpath.normpath(key) != key
        or key.startswith("/")
        or not key.startswith(f"{prefix}/" if prefix else "")
    ):
        raise UnsafeKey(f"The key {key!r} would leave its prefix.")
    return key


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Backend(Protocol):
    def open_writer(self, key: str) -> Writer: ...

    def open_reader(self, key: str) -> IO[bytes]: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


# --- Local directory -----------------------------------------------------------------------


def inside_allowed_roots(directory: str) -> bool:
    resolved = Path(directory).resolve()
    return any(
        resolved.is_relative_to(Path(root).resolve()) for root in settings.BACKUP_LOCAL_ROOTS
    )


class LocalWriter:
    def __init__(self, final: Path) -> None:
        self.final = final
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                prefix=f".{final.name}.", suffix=".partial", dir=final.parent
            )
        except OSError as exc:
            raise StorageError(f"Cannot write in {final.parent}: {exc.strerror or exc}.") from None
        self.temporary = Path(temporary)
        self.file: IO[bytes] = os.fdopen(handle, "wb")

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as exc:
            raise StorageError(f"Writing {self.final} failed: {exc.strerror or exc}.") from None

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if self.final.exists():
                raise StorageError(f"{self.final} already exists: a backup is never overwritten.")
            os.replace(self.temporary, self.final)
            directory = os.open(self.final.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            self.abort()
            raise StorageError(f"Saving {self.final} failed: {exc.strerror or exc}.") from None
        except StorageError:
            self.abort()
            raise

    def abort(self) -> None:
        self.file.close()
        self.temporary.unlink(missing_ok=True)


class LocalBackend:
    def __init__(self, directory: str) -> None:
        self.base = Path(directory).resolve()

    def path_of(self, key: str) -> Path:
        """The file of ``key``, which must resolve inside the base directory."""
        path = (self.base / key).resolve()
        if ".." in key.split("/") or not path.is_relative_to(self.base) or path == self.base:
            raise UnsafeKey(f"The key {key!r} would leave {self.base}.")
        return path

    def open_writer(self, key: str) -> LocalWriter:
        if not self.base.is_dir():
            raise StorageError(f"The backup directory {self.base} does not exist.")
        return LocalWriter(self.path_of(key))

    def open_reader(self, key: str) -> IO[bytes]:
        try:
            return self.path_of(key).open("rb")
        except OSError as exc:
            raise StorageError(f"Cannot read {key}: {exc.strerror or exc}.") from None

    def delete(self, key: str) -> None:
        try:
            self.path_of(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"Cannot delete {key}: {exc.strerror or exc}.") from None

    def exists(self, key: str) -> bool:
        return self.path_of(key).exists()


# --- S3 ------------------------------------------------------------------------------------


def describe_s3_error(exc: Exception, what: str) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"S3 refused to {what}: {error.get('Code', '?')}: {error.get('Message', '')}"
    return f"S3 could not {what}: {exc}"


def s3_client(storage: BackupStorage) -> Any:
    options: dict[str, Any] = {
        "config": Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            # No CRC32 of every request body (botocore's default since 1.36): a backup's
            # SHA-256 is computed as it is written and checked on every restore, and many
            # S3-compatible stores refuse the aws-chunked bodies that carry those checksums.
            request_checksum_calculation="when_required",
            # S3-compatible stores generally want path-style addressing.
            s3={"addressing_style": "path"} if storage.endpoint_url else {},
        )
    }
    if storage.region:
        options["region_name"] = storage.region
    if storage.endpoint_url:
        options["endpoint_url"] = storage.endpoint_url
    credentials = storage.credentials()
    if credentials is not None:
        options["aws_access_key_id"], options["aws_secret_access_key"] = credentials
    return boto3.session.Session().client("s3", **options)


# Parts sent at once. Measured against moto on 2 cores, 480 MiB in 8 MiB parts: one at a time
# 1.6-2.6 s, two 0.96 s, three 0.90 s; each one more holds one more part in memory.
PARTS_IN_FLIGHT = 2


class S3Writer:
    """A multipart upload fed piece by piece: parts of BACKUP_S3_PART_SIZE_MB (at least
    8 MiB) growing by one base size every 1000 parts, so that even a very large dump fits in
    S3's 10,000 parts.

    Full parts are sent by PARTS_IN_FLIGHT threads while the next one fills, so that the dump
    waits for the network only when that many are still on their way as the next one is full.
    Memory holds at most PARTS_IN_FLIGHT parts being sent and the one filling."""

    def __init__(self, client: Any, bucket: str, key: str, extra: dict[str, str]) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.base_part_size = settings.BACKUP_S3_PART_SIZE_MB * MIB
        self.buffer = bytearray()
        self.parts: list[dict[str, Any]] = []
        self.sending: deque[Future[dict[str, Any]]] = deque()
        try:
            started = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(
                describe_s3_error(exc, f"start an upload to s3://{bucket}/{key}")
            ) from None
        self.upload_id: str = started["UploadId"]
        self.sender = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="s3-part")

    @property
    def submitted(self) -> int:
        """Parts sent or on their way."""
        return len(self.parts) + len(self.sending)

    def _part_size(self) -> int:
        return self.base_part_size * (1 + self.submitted // 1000)

    def _upload(self, number: int, data: bytearray) -> dict[str, Any]:
        try:
            answer = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(describe_s3_error(exc, f"take part {number}")) from None
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _sent(self, keep: int = 0) -> None:
        """Wait for the oldest parts on their way until at most ``keep`` are; a failure is
        raised here, in the writer's thread. Oldest first: the parts stay in order."""
        while len(self.sending) > keep:
            self.parts.append(self.sending.popleft().result())

    def _send(self, part: bytearray) -> None:
        self._sent(keep=PARTS_IN_FLIGHT - 1)
        self.sending.append(self.sender.submit(self._upload, self.submitted + 1, part))

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= (size := self._part_size()):
            # The buffer itself becomes the part (cut to size, the rest, less than one
            # write, starts the next): no copy of a whole part is ever made.
            rest = self.buffer[size:]
            del self.buffer[size:]
            part, self.buffer = self.buffer, rest
            self._send(part)

    def commit(self) -> None:
        try:
            if self.buffer or not self.submitted:
                part, self.buffer = self.buffer, bytearray()
                self._send(part)
            self._sent()
        finally:
            self.sender.shutdown()
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(describe_s3_error(exc, "complete the upload")) from None

    def abort(self) -> None:
        self.buffer = bytearray()
        # The parts on their way are let finish (or fail: the abort follows a failure already
        # on its way up) first: aborting under them would leave S3 parts arriving for an
        # upload that no longer exists.
        while self.sending:
            with contextlib.suppress(Exception):
                self.sending.popleft().result()
        self.sender.shutdown()
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(describe_s3_error(exc, "abort the upload")) from None


class S3Backend:
    def __init__(self, storage: BackupStorage) -> None:
        self.storage = storage
        self.bucket = storage.bucket
        self.client = s3_client(storage)

    def _extra(self) -> dict[str, str]:
        extra: dict[str, str] = {}
        if self.storage.server_side_encryption:
            extra["ServerSideEncryption"] = self.storage.server_side_encryption
            if self.storage.kms_key_id:
                extra["SSEKMSKeyId"] = self.storage.kms_key_id
        return extra

    def open_writer(self, key: str) -> S3Writer:
        return S3Writer(self.client, self.bucket, key, self._extra())

    def open_reader(self, key: str) -> IO[bytes]:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(describe_s3_error(exc, f"read {key}")) from None
        body: IO[bytes] = answer["Body"]
        return body

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(describe_s3_error(exc, f"delete {key}")) from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(describe_s3_error(exc, f"look for {key}")) from None
        except BotoCoreError as exc:
            raise StorageError(describe_s3_error(exc, f"look for {key}")) from None
        return True


def backend_for(storage: BackupStorage) -> LocalBackend | S3Backend:
    if storage.kind == StorageKind.LOCAL:
        if not inside_allowed_roots(storage.directory):
            raise StorageError(
                f"{storage.directory} is outside the directories backups may use "
                "(BACKUP_LOCAL_ROOTS)."
            )
        return LocalBackend(storage.directory)
    return S3Backend(storage)
