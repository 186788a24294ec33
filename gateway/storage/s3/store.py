"""S3Blobs: a BlobStore in one bucket of an S3-compatible object store, over botocore (the
reference client of the S3 API: SigV4 signing, multipart uploads, retries).

Writing streams: a blob of up to PART_SIZE bytes is one PutObject; a longer one is a
multipart upload of PART_SIZE parts, each sent as soon as the iterator has filled it, so
memory holds about one part whatever the blob's size. The object exists only once
PutObject or CompleteMultipartUpload returned: a put that fails part-way aborts its upload
and leaves nothing a reader could see. Reading streams too: get is one GET read a chunk at
a time; open gives a seekable file that keeps one ranged GET open and starts another only
when the reader seeks elsewhere (the decryption's two passes: two GETs).

Object keys are the blob names as they are ("pickup:<id>"). Errors of the store other than
a missing object are raised as BlobStoreError with what the store answered.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from gateway.storage.blob_store import BlobStoreError, Chunk

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

PART_SIZE = 8 << 20  # multipart part size (S3's minimum is 5 MiB for all parts but the last)
READ_SIZE = 1 << 20  # what a streamed GET yields at a time
MISSING = {"404", "NoSuchKey", "NotFound"}
TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Settings:
    endpoint: str  # http(s)://host[:port]
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str


def _pieces(chunks: Iterable[Chunk], size: int) -> Iterator[bytes]:
    """CHUNKS regrouped into pieces of SIZE bytes (the last shorter; no data, no piece).
    A piece is copied once out of the buffer, which starts afresh with the rest before the
    piece is handed on: about two pieces' worth while one is cut, one while it is sent."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            with memoryview(pending) as view:
                piece, rest = bytes(view[:size]), bytearray(view[size:])
            pending = rest
            yield piece
            del piece
    if pending:
        yield bytes(pending)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in MISSING


class S3Blobs:
    def __init__(self, settings: S3Settings, part_size: int = PART_SIZE) -> None:
        self.bucket = settings.bucket
        self.part_size = part_size
        session = botocore.session.get_session()
        config = BotoConfig(
            signature_version="s3v4", s3={"addressing_style": "path"},
            connect_timeout=TIMEOUT, read_timeout=TIMEOUT,
            retries={"max_attempts": 3, "mode": "standard"},
            # Checksums only where the API requires them: MinIO and Ceph RGW versions differ
            # in the newer flexible checksums; SigV4 already covers every request's body.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        self._s3: Any = session.create_client(
            "s3", endpoint_url=settings.endpoint, region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key, config=config)

    def check(self) -> None:
        """The bucket is there and these credentials reach it; BlobStoreError otherwise."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise BlobStoreError(f"S3 bucket {self.bucket!r}: {code or exc}"
                                 + (" (no such bucket)" if code in MISSING else "")) from None
        except BotoCoreError as exc:
            raise BlobStoreError(f"S3 bucket {self.bucket!r}: {exc}") from None

    # -- writing -----------------------------------------------------------------------

    def put(self, name: str, chunks: Iterable[Chunk]) -> int:
        pieces = _pieces(chunks, self.part_size)
        try:
            head = [next(pieces, b"")]
            if len(head[0]) < self.part_size:  # all there is: one PutObject
                self._s3.put_object(Bucket=self.bucket, Key=name, Body=head[0])
                return len(head[0])
            # No look-ahead for a second piece (it would double what is held): a blob of
            # exactly one part is a multipart upload of one part, which S3 allows.
            return self._multipart(name, head, pieces)
        except ClientError as exc:
            raise BlobStoreError(f"S3 put {name}: {exc}") from None
        except BotoCoreError as exc:
            raise BlobStoreError(f"S3 put {name}: {exc}") from None

    def _multipart(self, name: str, head: list[bytes], rest: Iterator[bytes]) -> int:
        upload = self._s3.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            number = 0
            # (Not enumerate: its reused result tuple would hold the part just sent while
            # the next one is cut.)
            for piece in _chain(head, rest):
                number += 1
                answer = self._s3.upload_part(Bucket=self.bucket, Key=name, UploadId=upload,
                                              PartNumber=number, Body=piece)
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                size += len(piece)
                del piece
            self._s3.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload,
                                               MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            except (ClientError, BotoCoreError):
                pass  # the store's lifecycle rules (or a later abort) remove the parts
            raise
        return size

    # -- reading -----------------------------------------------------------------------

    def get(self, name: str) -> Iterator[bytes]:
        body = self._get(name, None)

        def chunks() -> Iterator[bytes]:
            try:
                while piece := body.read(READ_SIZE):
                    yield cast(bytes, piece)
            except BotoCoreError as exc:
                raise BlobStoreError(f"S3 get {name}: {exc}") from None
            finally:
                body.close()
        return chunks()

    def _get(self, name: str, start: int | None) -> Any:
        """The streaming body of NAME from byte START on; KeyError when there is none."""
        extra = {} if start is None else {"Range": f"bytes={start}-"}
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=name, **extra)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise KeyError(name) from None
            raise BlobStoreError(f"S3 get {name}: {exc}") from None
        except BotoCoreError as exc:
            raise BlobStoreError(f"S3 get {name}: {exc}") from None

    def open(self, name: str) -> tuple[BinaryIO, int]:
        size = self.size(name)
        if size is None:
            raise KeyError(name)
        return io.BufferedReader(_RangedRaw(self, name, size), buffer_size=READ_SIZE), size

    def size(self, name: str) -> int | None:
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise BlobStoreError(f"S3 head {name}: {exc}") from None
        except BotoCoreError as exc:
            raise BlobStoreError(f"S3 head {name}: {exc}") from None
        return int(head["ContentLength"])

    # -- removing ----------------------------------------------------------------------

    def delete(self, name: str) -> bool:
        """(S3 answers a DELETE of a missing key like any other: HEAD tells them apart.)"""
        if self.size(name) is None:
            return False
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=name)
        except (ClientError, BotoCoreError) as exc:
            raise BlobStoreError(f"S3 delete {name}: {exc}") from None
        return True

    def older_than(self, prefix: str, age: float) -> list[str]:
        """By the store's clock: the Date of its own listing answer against LastModified."""
        names: list[str] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                date = page["ResponseMetadata"]["HTTPHeaders"].get("date")
                now = parsedate_to_datetime(date).timestamp() if date else None
                for item in page.get("Contents", []):
                    if now is None or item["LastModified"].timestamp() <= now - age:
                        names.append(str(item["Key"]))
        except (ClientError, BotoCoreError) as exc:
            raise BlobStoreError(f"S3 list {prefix}: {exc}") from None
        return sorted(names)

    def close(self) -> None:
        self._s3.close()


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    """HEAD's piece (taken out of it, so it is not referenced once sent), then REST."""
    while head:
        yield head.pop(0)
    yield from rest


class _RangedRaw(io.RawIOBase):
    """Object NAME as a seekable raw file: one ranged GET streams from the position, a new
    one starts only when a read comes from somewhere else."""

    def __init__(self, store: S3Blobs, name: str, size: int) -> None:
        self._store = store
        self._name = name
        self._size = size
        self._position = 0
        self._body: Any = None
        self._body_at = -1  # where the open body will read next

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._position >= self._size:
            return 0
        if self._body is None or self._body_at != self._position:
            self._drop_body()
            try:
                self._body = self._store._get(self._name, self._position)
            except KeyError:  # gone since it was opened: reads as its end (truncated)
                return 0
            self._body_at = self._position
        target = memoryview(buffer).cast("B")
        try:
            data = self._body.read(min(len(target), self._size - self._position))
        except BotoCoreError as exc:
            raise BlobStoreError(f"S3 get {self._name}: {exc}") from None
        target[:len(data)] = data
        self._position += len(data)
        self._body_at = self._position
        return len(data)

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()
