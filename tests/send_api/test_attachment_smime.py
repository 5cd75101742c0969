"""S/MIME signed data attached through the send API is read through, as the milter reads
it: a file inside that would be refused on its own refuses the attachment."""

from __future__ import annotations

import base64

import pytest

from postwarden_admin_api.send.attachments import UNREADABLE_SIGNED, refusal_reason
from postwarden_policies import uuencode
from tests.policies.test_smime_signed_data import SAMPLES


def _refusal(filename: str, content_type: str, content: bytes) -> str | None:
    return refusal_reason(filename, content_type, content, uuencode.Budget())


def _der(eml: str) -> bytes:
    return base64.b64decode((SAMPLES / eml).read_bytes().split(b"\n\n", 1)[1])


@pytest.mark.parametrize(("content", "refused"), [
    pytest.param(_der("signed_exe.eml"), "'setup.exe' in this signed data", id="mime-with-exe"),
    pytest.param((SAMPLES / "tool.exe.p7m").read_bytes(),
                 "a file without a name in this signed data: the content is "
                 "application/x-dosexec", id="signed-executable-file"),
    pytest.param(_der("nested_html.eml"), None, id="html-is-no-reason"),
    pytest.param(_der("signed_text.eml"), None, id="text"),
    pytest.param((SAMPLES / "invoice.pdf.p7m").read_bytes(), None, id="signed-pdf"),
])
def test_a_file_in_signed_data_is_checked(content: bytes, refused: str | None) -> None:
    reason = _refusal("smime.p7m", "application/octet-stream", content)
    assert reason == refused if refused is None else (reason or "").startswith(refused)


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body).to_bytes(4, "big")
    return bytes([tag, 0x84]) + size + body


def _signed(content: bytes) -> bytes:
    """Signed data holding ``content``, unsigned: the readers and the checks here verify
    no signature."""
    data = bytes.fromhex("06092a864886f70d010701")
    encapsulated = _tlv(0x30, data + _tlv(0xA0, _tlv(0x04, content)))
    signed_data = _tlv(0x30, b"\x02\x01\x01" + _tlv(0x31, b"") + encapsulated + _tlv(0x31, b""))
    return _tlv(0x30, bytes.fromhex("06092a864886f70d010702") + _tlv(0xA0, signed_data))


@pytest.mark.parametrize(("content", "what"), [
    pytest.param(bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3") + bytes(200),
                 "a OneNote file", id="onenote"),
    pytest.param(bytes(0x8000) + b"\x01CD001\x01" + bytes(100), "a disk image", id="iso"),
])
def test_a_disk_image_or_onenote_file_in_signed_data_is_refused(content: bytes,
                                                                what: str) -> None:
    assert _refusal("smime.p7m", "application/octet-stream", _signed(content)) == (
        f"a file without a name in this signed data: the content is {what}")
    assert _refusal("smime.p7m", "application/octet-stream",
                    _signed(b"MZ" + bytes(100))) == (
        "a file without a name in this signed data: the content is application/x-dosexec")


def test_signed_data_cut_short_is_refused() -> None:
    content = _der("signed_exe.eml")
    assert _refusal("smime.p7m", "application/pkcs7-mime",
                    content[: len(content) // 2]) == UNREADABLE_SIGNED
