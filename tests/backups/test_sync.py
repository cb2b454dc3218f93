"""Object-storage backups (apps/backups/sync.py) against moto's S3 server over HTTP: a bucket
synced to a backup bucket by a real worker through the operations engine, copying only what
changed the second time; the restore the other way (admins, a reason, the destination
typed); prefixes and keys that would leave their prefix refused or skipped."""

from __future__ import annotations

import os
from typing import Any

import pytest

from apps.backups.sync import Place, StorageError, sync_objects
from apps.operations import actions
from apps.operations.actions import InvalidParameters, OperationRefused
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import BUCKET, make_s3_storage, open_multipart_uploads
from tests.conftest import client_for
from tests.support.waiting import wait_for

FILES = "opsportal-files"
MIB = 1024 * 1024


class Recorder:
    """A Progress that keeps what it is told (the handler's real reporter writes to the DB)."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, str]] = []
        self.lines: list[str] = []

    def step(self, progress: int, status: str) -> None:
        self.steps.append((progress, status))

    def log(self, message: str, level: str = "info") -> None:
        self.lines.append(message)

    def check_cancelled(self) -> None:
        pass


@pytest.fixture
def files(s3: Any) -> Any:
    """A files bucket with a few objects under uploads/ and one outside it."""
    s3.create_bucket(Bucket=FILES)
    s3.put_object(Bucket=FILES, Key="uploads/a.txt", Body=b"alpha", Metadata={"owner": "ada"})
    s3.put_object(Bucket=FILES, Key="uploads/docs/b.bin", Body=os.urandom(70_000))
    s3.put_object(Bucket=FILES, Key="uploads/docs/c.txt", Body=b"gamma")
    s3.put_object(Bucket=FILES, Key="other/outside.txt", Body=b"not in the prefix")
    return s3


def body(client: Any, bucket: str, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def run(actor: Any, kind: str, storage_id: int, reason: str = "", **params: Any) -> Operation:
    operation = actions.do_start_operation(actor, kind, str(storage_id), params, reason)
    wait_for(lambda: Operation.objects.get(pk=operation.pk).is_final, timeout=90, what="the sync")
    operation.refresh_from_db()
    return operation


SYNC = {
    "source_bucket": FILES,
    "source_prefix": "uploads",
    "destination_bucket": BUCKET,
    "destination_prefix": "files",
}


@pytest.mark.usefixtures("celery_worker")
def test_a_sync_copies_everything_then_only_what_changed(
    operator: Any, files: Any, s3_endpoint: str
) -> None:
    storage = make_s3_storage(s3_endpoint)

    first = run(operator, "backups.sync_objects", storage.pk, **SYNC)

    assert first.state == State.SUCCEEDED, first.error
    assert "3 copied" in first.status_text and "0 unchanged" in first.status_text
    assert keys(files, BUCKET) == ["files/a.txt", "files/docs/b.bin", "files/docs/c.txt"]
    for name in ("a.txt", "docs/b.bin", "docs/c.txt"):
        assert body(files, BUCKET, f"files/{name}") == body(files, FILES, f"uploads/{name}")
    head = files.head_object(Bucket=BUCKET, Key="files/a.txt")
    assert head["Metadata"]["owner"] == "ada"  # the source's metadata is kept
    progress = " ".join(first.log_lines.values_list("message", flat=True))
    assert "3 of 3 copied" in progress

    files.put_object(Bucket=FILES, Key="uploads/docs/c.txt", Body=b"GAMMA")  # same size
    files.put_object(Bucket=FILES, Key="uploads/new.txt", Body=b"new")
    second = run(operator, "backups.sync_objects", storage.pk, **SYNC)

    assert second.state == State.SUCCEEDED, second.error
    assert "2 copied" in second.status_text and "2 unchanged" in second.status_text
    assert body(files, BUCKET, "files/docs/c.txt") == b"GAMMA"
    assert body(files, BUCKET, "files/new.txt") == b"new"
    assert "other/outside.txt" not in " ".join(keys(files, BUCKET))


@pytest.mark.usefixtures("celery_worker")
def test_a_dated_sync_goes_under_the_day_it_was_requested(
    operator: Any, files: Any, s3_endpoint: str
) -> None:
    storage = make_s3_storage(s3_endpoint)

    operation = run(operator, "backups.sync_objects", storage.pk, **SYNC, dated=True)

    assert operation.state == State.SUCCEEDED, operation.error
    day = f"{operation.created_at:%Y%m%d}"
    assert keys(files, BUCKET) == [
        f"files/{day}/a.txt",
        f"files/{day}/docs/b.bin",
        f"files/{day}/docs/c.txt",
    ]


@pytest.mark.usefixtures("celery_worker")
def test_the_restore_copies_the_backup_back_over_what_changed(
    admin: Any, operator: Any, files: Any, s3_endpoint: str
) -> None:
    storage = make_s3_storage(s3_endpoint)
    assert run(operator, "backups.sync_objects", storage.pk, **SYNC).state == State.SUCCEEDED
    files.put_object(Bucket=FILES, Key="uploads/a.txt", Body=b"overwritten by mistake")
    files.delete_object(Bucket=FILES, Key="uploads/docs/b.bin")
    back = {
        "source_bucket": BUCKET,
        "source_prefix": "files",
        "destination_bucket": FILES,
        "destination_prefix": "uploads",
        "confirm_destination": f"s3://{FILES}/uploads/",
    }

    operation = run(admin, "backups.restore_objects", storage.pk, "files lost", **back)

    assert operation.state == State.SUCCEEDED, operation.error
    assert "2 copied" in operation.status_text and "1 unchanged" in operation.status_text
    assert body(files, FILES, "uploads/a.txt") == b"alpha"
    assert body(files, FILES, "uploads/docs/b.bin") == body(files, BUCKET, "files/docs/b.bin")


def test_the_restore_needs_an_admin_a_reason_and_the_destination_typed(
    admin: Any, operator: Any, s3: Any, s3_endpoint: str
) -> None:
    storage = make_s3_storage(s3_endpoint)
    back = {
        "source_bucket": BUCKET,
        "source_prefix": "files",
        "destination_bucket": FILES,
        "destination_prefix": "uploads",
        "confirm_destination": f"s3://{FILES}/uploads/",
    }
    kind = "backups.restore_objects"

    with pytest.raises(OperationRefused, match="Your role does not allow"):
        actions.do_start_operation(operator, kind, str(storage.pk), back, "why")
    with pytest.raises(OperationRefused, match="A reason is required"):
        actions.do_start_operation(admin, kind, str(storage.pk), back, "")
    for typed in ("", f"s3://{FILES}/", "uploads"):
        with pytest.raises(InvalidParameters) as refused:
            actions.do_start_operation(
                admin, kind, str(storage.pk), {**back, "confirm_destination": typed}, "why"
            )
        assert "confirm_destination" in refused.value.errors
    assert not Operation.objects.filter(kind=kind).exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source_prefix", "../etc"),
        ("source_prefix", "uploads/../../x"),
        ("destination_prefix", "files/.."),
        ("destination_prefix", "a//b"),
        ("destination_bucket", "../bucket"),
    ],
)
def test_prefixes_that_would_leave_are_refused(
    operator: Any, s3: Any, s3_endpoint: str, field: str, value: str
) -> None:
    storage = make_s3_storage(s3_endpoint)

    with pytest.raises(InvalidParameters) as refused:
        actions.do_start_operation(
            operator, "backups.sync_objects", str(storage.pk), {**SYNC, field: value}, ""
        )

    assert field in refused.value.errors
    assert not Operation.objects.filter(kind="backups.sync_objects").exists()


def test_a_sync_into_the_prefix_it_copies_is_refused(
    operator: Any, s3: Any, s3_endpoint: str
) -> None:
    storage = make_s3_storage(s3_endpoint)
    inside = {**SYNC, "destination_bucket": FILES, "destination_prefix": "uploads/backup"}

    with pytest.raises(InvalidParameters) as refused:
        actions.do_start_operation(operator, "backups.sync_objects", str(storage.pk), inside, "")

    assert "overlap" in " ".join(refused.value.errors["__all__"])


def test_keys_that_would_climb_out_are_skipped_not_copied(s3: Any, files: Any) -> None:
    for key in ("uploads/../../escape.txt", "uploads/x/../../../up.txt", "uploads//twice"):
        files.put_object(Bucket=FILES, Key=key, Body=b"sneaky")
    recorder = Recorder()

    outcome = sync_objects(s3, Place(FILES, "uploads"), Place(BUCKET, "files"), recorder)

    assert outcome.copied == 3
    assert sorted(outcome.skipped or []) == sorted(
        ["uploads/../../escape.txt", "uploads/x/../../../up.txt", "uploads//twice"]
    )
    assert all(key.startswith("files/") and ".." not in key for key in keys(s3, BUCKET))
    assert len(keys(s3, BUCKET)) == 3
    assert any("would leave" in line for line in recorder.lines)


def test_big_objects_are_copied_in_parts_and_not_again(s3: Any, files: Any) -> None:
    data = os.urandom(12 * MIB + 3)
    files.put_object(Bucket=FILES, Key="uploads/big.bin", Body=data)
    source, target = Place(FILES, "uploads"), Place(BUCKET, "files")

    first = sync_objects(s3, source, target, Recorder(), part_bytes=5 * MIB)
    second = sync_objects(s3, source, target, Recorder(), part_bytes=5 * MIB)

    assert first.copied == 4
    assert body(s3, BUCKET, "files/big.bin") == data
    assert s3.head_object(Bucket=BUCKET, Key="files/big.bin")["ETag"].endswith('-3"')
    assert (second.copied, second.unchanged) == (0, 4)
    assert open_multipart_uploads(s3) == []


def test_a_missing_source_bucket_fails_with_s3s_words(s3: Any) -> None:
    with pytest.raises(StorageError, match="NoSuchBucket"):
        sync_objects(s3, Place("no-such-files", ""), Place(BUCKET, "files"), Recorder())


def test_the_pages_of_the_sync_show_the_form_refuse_bad_prefixes_and_confirm(
    operator: Any, s3: Any, s3_endpoint: str
) -> None:
    storage = make_s3_storage(s3_endpoint)
    client = client_for(operator)
    start = "/operations/start/backups.sync_objects/"

    form = client.get(f"{start}?target={storage.pk}")
    assert form.status_code == 200
    assert "Bucket to back up" in form.content.decode()

    fields: dict[str, Any] = {f"p-{name}": value for name, value in SYNC.items()}
    fields.update(target=storage.pk, idempotency_key="s" * 32)
    bad = client.post(start, {**fields, "p-source_prefix": "../../etc"})
    assert bad.status_code == 400
    assert "a copy can never leave its prefix" in bad.content.decode()
    review = client.post(start, fields)
    assert review.status_code == 200
    assert f"aws s3 sync --endpoint-url {s3_endpoint} s3://{FILES}/uploads/" in (
        review.content.decode()
    )
    assert not Operation.objects.exists()
