"""S/MIME signed data attached through the send API is read through, as the milter reads
it: a file inside that would be refused on its own refuses the attachment."""

from __future__ import annotations

import base64

import pytest

from postwarden_admin_api.send.attachments import UNREADABLE_SIGNED, refusal_reason
from tests.policies.test_smime_signed_data import SAMPLES


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
    reason = refusal_reason("smime.p7m", "application/octet-stream", content)
    assert reason == refused if refused is None else (reason or "").startswith(refused)


def test_signed_data_cut_short_is_refused() -> None:
    content = _der("signed_exe.eml")
    assert refusal_reason("smime.p7m", "application/pkcs7-mime",
                          content[: len(content) // 2]) == UNREADABLE_SIGNED
