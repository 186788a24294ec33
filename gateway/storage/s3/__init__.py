"""Blobs in an S3-compatible object store (storage.blobs = "s3": MinIO, Ceph RGW, AWS S3):
S3Blobs, a BlobStore (gateway/storage/blob_store.py) over botocore."""

from __future__ import annotations

from gateway.storage.s3.store import PART_SIZE, S3Blobs, S3Settings

__all__ = ["PART_SIZE", "S3Blobs", "S3Settings"]
