"""The real type of an attachment from its first bytes (magic numbers), whatever its name or
declared Content-Type says, and whether it is encrypted (password-protected).

EncryptionSniffer reads an attachment's decoded content as it streams (memory: a few dozen
bytes carried from one piece to the next) and looks for the marks each format leaves:
- ZIP: bit 0 of the general-purpose flag of a local file header (PK\\3\\4, offset 6) or of
  a central directory header (PK\\1\\2, offset 8): traditional PKWARE or AES encryption;
- PDF: an /Encrypt entry in a trailer or cross-reference stream dictionary;
- OLE compound files (legacy and encrypted Office documents): a directory entry named
  "EncryptedPackage" or "EncryptionInfo" (UTF-16LE), which is how Office stores a
  password-protected .docx/.xlsx/.pptx (MS-OFFCRYPTO). Legacy .doc/.xls files encrypted
  with RC4 keep their flag inside the document stream and are not recognised.
"""

from __future__ import annotations

import struct

SNIFF_BYTES = 512  # decoded bytes kept from the start of each part for sniffing

# (magic, offset, type), first match wins.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF-", 0, "application/pdf"),
    (b"PK\x03\x04", 0, "application/zip"),
    (b"PK\x05\x06", 0, "application/zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "application/x-ole-storage"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"7z\xbc\xaf\x27\x1c", 0, "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", 0, "application/vnd.rar"),
    (b"\x1f\x8b", 0, "application/gzip"),
    (b"{\\rtf", 0, "application/rtf"),
    (b"MZ", 0, "application/x-msdownload"),
    (b"\x7fELF", 0, "application/x-executable"),
)
_OOXML = {b"word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
          b"xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
          b"ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation"}


def sniff_type(start: bytes) -> str | None:
    """The type the first bytes of a file show, or None when they show none we know."""
    for magic, offset, kind in _MAGIC:
        if start[offset:offset + len(magic)] == magic:
            if kind == "application/zip":
                for marker, office in _OOXML.items():
                    if marker in start:
                        return office
            return kind
    return None


_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_CENTRAL = b"PK\x01\x02"
_PDF_ENCRYPT = b"/Encrypt"
_OLE_MARKS = ("EncryptedPackage".encode("utf-16-le"), "EncryptionInfo".encode("utf-16-le"))
_CARRY = 64  # bytes carried between pieces: longer than every mark and header read


class EncryptionSniffer:
    """Feed the decoded content of one attachment in order; ENCRYPTED tells what was found."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # a sniffed type: only zip, pdf and OLE files are looked into
        self.encrypted = False
        self._carry = b""

    @staticmethod
    def wanted(kind: str | None) -> bool:
        return kind is not None and (kind == "application/zip" or kind == "application/pdf"
                                     or kind == "application/x-ole-storage"
                                     or kind.startswith("application/vnd.openxmlformats"))

    def feed(self, data: bytes) -> None:
        if self.encrypted or not data:
            return
        window = self._carry + data
        if self.kind == "application/pdf":
            self.encrypted = _PDF_ENCRYPT in window
        elif self.kind == "application/x-ole-storage":
            self.encrypted = any(mark in window for mark in _OLE_MARKS)
        else:
            self.encrypted = _zip_encrypted(window)
        self._carry = window[-_CARRY:]


def _zip_encrypted(window: bytes) -> bool:
    for signature, flag_at in ((_ZIP_LOCAL, 6), (_ZIP_CENTRAL, 8)):
        found = window.find(signature)
        while 0 <= found <= len(window) - flag_at - 2:
            (flags,) = struct.unpack_from("<H", window, found + flag_at)
            if flags & 1:
                return True
            found = window.find(signature, found + 1)
    return False
