"""postwarden_policies: the policy language, its engine and the message facts it reads.

Load a :class:`PolicySet` (:func:`load_policy_set` from files,
:func:`load_policy_set_from_sources` from stored revisions), then
:func:`evaluate` message facts (from :func:`parse_message`) into a
:class:`Verdict`. Everything here is pure: no sockets, no database, no threads.
"""

from .audit import AuditEvent
from .delivery import apply_edits
from .engine import evaluate, evaluate_message, parse_for
from .errors import PoliciesError, PolicyIssue, PolicyLoadError
from .facts import Envelope, Header, MessageFacts, MimePart, client_ip
from .html_allowlist import HtmlOptions
from .loader import check_policy_text, load_policy_set, load_policy_set_from_sources
from .mimeparse import parse_message
from .policyset import PolicySet
from .policytests import CaseResult, Failure, run_policy_tests
from .redact import redact
from .render import verdict_json
from .rewrite import RewritePlan, RewriteResult, rewrite_body
from .schema import policy_schema
from .settings_source import SettingsError, gather_settings
from .verdicts import (
    Accept,
    Action,
    AddHeader,
    AttachmentStripped,
    Change,
    ChangeHeader,
    Decision,
    DeleteRecipient,
    Discard,
    Edit,
    HtmlSanitized,
    Quarantine,
    Reject,
    RemoveHeader,
    ReplaceBody,
    Reply,
    SignedHtmlKept,
    SmtpReply,
    TempFail,
    Verdict,
)

__all__ = [
    "Accept",
    "Action",
    "AddHeader",
    "AttachmentStripped",
    "AuditEvent",
    "CaseResult",
    "Change",
    "ChangeHeader",
    "Decision",
    "DeleteRecipient",
    "Discard",
    "Edit",
    "Envelope",
    "Failure",
    "Header",
    "HtmlOptions",
    "HtmlSanitized",
    "MessageFacts",
    "MimePart",
    "PoliciesError",
    "PolicyIssue",
    "PolicyLoadError",
    "PolicySet",
    "Quarantine",
    "Reject",
    "RemoveHeader",
    "ReplaceBody",
    "Reply",
    "RewritePlan",
    "RewriteResult",
    "SettingsError",
    "SignedHtmlKept",
    "SmtpReply",
    "TempFail",
    "Verdict",
    "apply_edits",
    "check_policy_text",
    "client_ip",
    "evaluate",
    "evaluate_message",
    "gather_settings",
    "load_policy_set",
    "load_policy_set_from_sources",
    "parse_for",
    "parse_message",
    "policy_schema",
    "redact",
    "rewrite_body",
    "run_policy_tests",
    "verdict_json",
]
