"""Built-in detectors: each finds what it names, validated, and passes over look-alikes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import hypothesis
import pytest
from hypothesis import strategies as st

from gateway.classify.detectors import (
    count_dob,
    count_iban,
    count_icd10,
    count_payment_card,
    count_us_npi,
    count_us_ssn,
    luhn_valid,
)
from gateway.classify.sniff import EncryptionSniffer, sniff_type


def test_ssn_with_dashes_is_found() -> None:
    assert count_us_ssn("SSN: 536-22-1234.") == 1


def test_ssn_with_spaces_is_found() -> None:
    assert count_us_ssn("ssn 536 22 1234") == 1


def test_ssn_in_never_issued_areas_is_not_counted() -> None:
    assert count_us_ssn("000-12-3456 666-12-3456 900-12-3456 999-12-3456") == 0


def test_ssn_with_group_00_or_serial_0000_is_not_counted() -> None:
    assert count_us_ssn("536-00-1234 and 536-22-0000") == 0


def test_published_example_ssn_is_not_counted() -> None:
    assert count_us_ssn("the Woolworth card 078-05-1120") == 0


def test_nine_digits_without_separators_are_not_an_ssn() -> None:
    assert count_us_ssn("order 536221234") == 0


def test_ssn_inside_a_longer_number_is_not_counted() -> None:
    assert count_us_ssn("tracking 1536-22-12345") == 0


def test_luhn_valid_card_is_found_with_spaces() -> None:
    assert count_payment_card("card 4111 1111 1111 1111 exp 12/29") == 1


def test_luhn_valid_card_is_found_with_dashes_and_without() -> None:
    assert count_payment_card("5500-0000-0000-0004 and 378282246310005") == 2


def test_card_number_failing_luhn_is_not_counted() -> None:
    assert count_payment_card("4111 1111 1111 1112") == 0


def test_luhn_valid_number_outside_card_prefixes_is_not_counted() -> None:
    assert luhn_valid("9999999999999995")
    assert count_payment_card("9999 9999 9999 9995") == 0


def test_repeated_digit_is_not_a_card() -> None:
    assert count_payment_card("0000 0000 0000 0000") == 0


def test_iban_with_valid_checksum_is_found_grouped_and_compact() -> None:
    assert count_iban("DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432") == 2


def test_iban_with_a_wrong_checksum_is_not_counted() -> None:
    assert count_iban("DE89 3704 0044 0532 0130 01") == 0


def test_iban_of_the_wrong_length_for_its_country_is_not_counted() -> None:
    assert count_iban("DE89370400440532013") == 0


def test_npi_with_its_luhn_check_digit_is_found() -> None:
    assert count_us_npi("NPI 1234567893") == 1


def test_ten_digits_failing_the_npi_check_are_not_counted() -> None:
    assert count_us_npi("call 1234567890") == 0


def test_ten_digits_starting_with_3_are_not_an_npi() -> None:
    assert count_us_npi("3234567893") == 0


def test_icd10_code_near_a_diagnosis_keyword_is_found() -> None:
    assert count_icd10("Diagnosis: E11.9, also J45.909") == 2


def test_icd10_shape_without_a_keyword_is_not_counted() -> None:
    assert count_icd10("Meet in room E11 at gate J45.") == 0


def test_icd10_shape_far_from_the_keyword_is_not_counted() -> None:
    assert count_icd10("diagnosis" + " filler" * 30 + " E11.9") == 0


def test_dob_in_us_and_iso_and_written_forms_is_found() -> None:
    text = "DOB: 03/14/1962; date of birth 1970-01-31; born on March 3, 1975; D.O.B. 2 Jan 1990"
    assert count_dob(text) == 4


def test_date_without_a_birth_keyword_is_not_counted() -> None:
    assert count_dob("Appointment on 03/14/2024 at noon") == 0


def test_impossible_date_after_dob_is_not_counted() -> None:
    assert count_dob("DOB: 1980-02-30 and DOB 13/13/1980") == 0


def test_future_date_of_birth_is_not_counted() -> None:
    assert count_dob("born 2999-01-01") == 0


def _zip(encrypted: bool) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "x" * 100)
    data = bytearray(buffer.getvalue())
    if encrypted:
        data[6] |= 1
    return bytes(data)


def _encrypted(data: bytes, piece: int = 7) -> bool:
    sniffer = EncryptionSniffer(sniff_type(data) or "")
    for start in range(0, len(data), piece):
        sniffer.feed(data[start:start + piece])
    return sniffer.encrypted


def test_zip_with_the_encryption_flag_is_encrypted() -> None:
    assert _encrypted(_zip(True))


def test_zip_without_the_flag_is_not_encrypted() -> None:
    assert not _encrypted(_zip(False))


def test_pdf_with_an_encrypt_entry_split_across_pieces_is_encrypted() -> None:
    assert _encrypted(b"%PDF-1.7\n" + b"x" * 1000 + b"trailer << /Encrypt 9 0 R >>", piece=5)


def test_pdf_without_encrypt_is_not_encrypted() -> None:
    assert not _encrypted(b"%PDF-1.7\n" + b"x" * 1000 + b"trailer << /Root 1 0 R >>")


def test_office_file_with_an_encrypted_package_stream_is_encrypted() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600 + "EncryptedPackage".encode("utf-16-le")
    assert _encrypted(ole)


def test_ordinary_ole_file_is_not_encrypted() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600 + "WordDocument".encode("utf-16-le")
    assert not _encrypted(ole)


def test_sniffing_names_a_docx_by_its_content() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w/>")
    assert sniff_type(buffer.getvalue()[:512]) == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document")


def test_non_ascii_digits_are_found_as_the_patterns_read_them() -> None:
    """Fullwidth digits are digits to the patterns: the fast ASCII path must not lose them."""
    assert count_us_ssn("SSN \uff15\uff13\uff16-\uff12\uff12-\uff11\uff12\uff13\uff14") == 1


def test_numbers_next_to_non_ascii_text_are_found() -> None:
    assert count_payment_card("Kärtchen: 4111 1111 1111 1111 – danke") == 1
    assert count_iban("Überweisung DE89 3704 0044 0532 0130 00") == 1


def test_run_with_leading_spaces_and_dashes_still_finds_the_ssn() -> None:
    assert count_us_ssn("ref -- 536-22-1234 end") == 1


# Pieces of text that make findings, near-findings and what borders them: the fast paths for
# ASCII text (masks, candidate positions, gates) must count what the general path counts.
_PIECES = ("536-22-1234", "536 22 1234", "536-22 1234", "4111 1111 1111 1111", "4111111111111111",
           "4111-1111-1111-1111", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
           "1234567893", "2234567891", "E11.9", "J45", "Diagnosis", "dx:", "ICD-10", "DOB:",
           "born on", "date of birth", "d.o.b.", "03/14/1962", "1970-01-31", "March 3, 1975",
           "0", "1", "2", "9", "-", " ", "  ", "\n", "a", "A", "Z", ".", ":", "x")
_GENERAL_PATH = "\n\u00e9"  # a non-ASCII character on a line of its own: no finding changes


@pytest.mark.parametrize("count", [count_us_ssn, count_payment_card, count_iban, count_us_npi,
                                   count_icd10, count_dob], ids=lambda c: c.__name__)
@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(pieces=st.lists(st.sampled_from(_PIECES), max_size=40))
def test_ascii_fast_path_counts_what_the_general_path_counts(
        count: Callable[[str], int], pieces: list[str]) -> None:
    text = "".join(pieces)
    assert count(text) == count(text + _GENERAL_PATH)
