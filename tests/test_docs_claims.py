"""What README.md and contrib/ say about settings, metrics, the policy push and DKIM is
what the code does: the push's output order, the log levels the admin settings take,
every metric name and label value the README gives, the edits that break a DKIM
signature, an upgrade across a migration an earlier admin instance cannot read, and
what this version changes for API clients, and what each audit verdict means; and
that every file the install documents link or name under contrib/ or docs/ is there."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from postwarden_admin_api.audit_queries import ACTIONS
from postwarden_admin_api.metrics import Metrics as AdminMetrics
from postwarden_admin_api.policy_push import checked_files
from postwarden_admin_api.webhooks.openapi import OPENAPI_PATHS as WEBHOOK_PATHS
from postwarden_admin_api.webhooks.openapi import SCHEMAS as WEBHOOK_SCHEMAS
from postwarden_admin_api.webhooks.options import WebhookOptions
from postwarden_admin_api.webhooks.worker import row_wait_seconds, worker_context
from postwarden_milter import handler
from postwarden_milter.metrics import VERDICTS
from postwarden_milter.metrics import Metrics as MilterMetrics
from postwarden_milter.metrics_merge import MergedMetrics
from postwarden_milter.settings import MilterSettings
from postwarden_policies import load_policy_set
from postwarden_policies.headeredits import FLAGS_HEADER
from postwarden_policies.settings_source import LOG_LEVELS
from postwarden_store.migrations import available_migrations

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
ADMIN_EXAMPLE = REPO / "contrib" / "postwarden-admin.example.yaml"
POSTFIX_README = REPO / "contrib" / "postfix" / "README.md"
POLICY_LANGUAGE = REPO / "docs" / "policy-language.md"
API_DOC = REPO / "docs" / "api.md"
EXAMPLE = REPO / "contrib" / "postwarden.example.yaml"
# `name{label="value"}`, as the README shows one series of a metric.
SERIES = re.compile(r'`(postwarden_\w+)\{(\w+)="(\w+)"\}`')
# The README's other postwarden_ names: the Python packages.
PACKAGES = {"postwarden_policies", "postwarden_store", "postwarden_milter",
            "postwarden_admin_api"}


def _metrics_item() -> str:
    """The README's Operations item that lists the metrics."""
    text = README.read_text(encoding="utf-8")
    start = text.index("- **Metrics.**")
    return text[start:text.index("\n## ", start)]


def _families(*registries: CollectorRegistry) -> dict[str, set[str]]:
    """Each family -> the names a document may call it by (a counter's ``_total`` too)."""
    families: dict[str, set[str]] = {}
    for registry in registries:
        for family in registry.collect():
            aliases = {family.name}
            if family.type == "counter":
                aliases.add(f"{family.name}_total")
            families[family.name] = aliases
    return families


def test_the_readme_push_session_shows_the_files_in_the_order_push_prints_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a fresh database the first file push uploads gets revision 1: the README's
    session is what `policy push policies/examples` prints there."""
    monkeypatch.chdir(REPO)
    shown = re.findall(r"^(\S+): active as revision (\d+)$", README.read_text(), re.M)
    pushed = checked_files(Path("policies/examples"))
    assert isinstance(pushed, dict)
    assert shown == [(file, str(number))
                     for number, (file, _) in enumerate(pushed.values(), 1)]


def test_the_admin_example_names_every_log_level_the_setting_takes() -> None:
    text = ADMIN_EXAMPLE.read_text(encoding="utf-8")
    comment = text[text.rindex("\n\n", 0, text.index("\nlog_level:")):text.index("\nlog_level:")]
    assert [level for level in LOG_LEVELS if level not in comment] == []


def test_every_metric_the_readme_names_is_exposed_and_every_milter_metric_is_named() -> None:
    milter = _families(MilterMetrics().registry, MergedMetrics().registry)
    exposed = set().union(*milter.values(), *_families(AdminMetrics().registry).values())
    named = set(re.findall(r"\b(postwarden_\w+)", README.read_text(encoding="utf-8")))
    named -= PACKAGES
    # `postwarden_audit_*` stands for every metric of that prefix.
    prefixes = tuple(name for name in named if name.endswith("_"))
    assert sorted(named - set(prefixes) - exposed) == []
    assert all(any(name.startswith(prefix) for name in exposed) for prefix in prefixes)
    assert sorted(family for family, aliases in milter.items()
                  if not aliases & named and not family.startswith(prefixes)) == []


def test_the_metrics_item_lists_every_label_value_the_readme_shows() -> None:
    """A series shown elsewhere (`postwarden_relay_outcomes_total{outcome="unreachable"}`)
    is among the values the Metrics item lists for its metric, where it lists them."""
    item = _metrics_item()
    listed = [(m.start(), m[1]) for m in re.finditer(r"`(postwarden_\w+)`", item)]
    segments = {name: item[start:end] for (start, name), (end, _) in
                zip(listed, [*listed[1:], (len(item), "")], strict=True)}
    shown = set(SERIES.findall(README.read_text(encoding="utf-8")))
    assert shown  # the README's series were found at all
    missing = [f"{name}{{{label}={value!r}}}" for name, label, value in sorted(shown)
               if name in segments and f"by {label}" in segments[name]
               and f"`{value}`" not in segments[name]]
    assert missing == []


def test_the_dkim_note_names_every_edit_and_what_an_admin_can_do() -> None:
    """Every edit breaks a signature the message arrived with, for any later hop that
    checks DKIM or DMARC: the note names them (the headers the milter adds and removes
    by itself among them) and the ways out; the README's byte-for-byte claim names the
    header every message gets (tests/e2e: test_clean_message_arrives_byte_identical)."""
    text = POSTFIX_README.read_text(encoding="utf-8")
    note = text[text.index("Any edit postwarden makes breaks a DKIM"):]
    note = note[:note.index("\n\nA milter after postwarden")]
    edits = ["Subject prefix", "sanitized HTML", "stripped attachment", "remove_header",
             "add_header", f"`{FLAGS_HEADER}`", f"`{MilterSettings().id_header}`"]
    ways = ["sign after postwarden", "`Authentication-Results`", "ARC-seal after postwarden",
            "DMARC", "`signed_mail: skip`"]
    assert [phrase for phrase in edits + ways if phrase not in note] == []
    readme = README.read_text(encoding="utf-8")
    claim = readme[readme.index("a message nothing changed arrives byte for byte"):][:200]
    assert f"`{MilterSettings().id_header}`" in claim and "DKIM" in claim


def test_the_duplicate_docs_say_a_copy_a_later_milter_refused_still_counts() -> None:
    """postwarden never learns that a milter after it (a DKIM signer, as the docs order
    them) or Postfix refused a copy it let through, so the sender's retry is a duplicate
    (tests/e2e/test_milter_chain.py): the condition's row, the Postfix notes and the
    example settings say so, and that a rule on duplicates then must not reject or
    discard, which loses that retry."""
    row = next(line for line in POLICY_LANGUAGE.read_text(encoding="utf-8").splitlines()
               if line.startswith("| `duplicate` |"))
    assert "a milter after it, or Postfix itself" in row and "still counts" in row
    notes = POSTFIX_README.read_text(encoding="utf-8")
    notes = notes[notes.index("A milter after postwarden may still"):]
    notes = notes[:notes.index("\n\n")]
    assert "`duplicate`" in notes and "`tests/e2e/test_milter_chain.py`" in notes
    assert "never reject or discard" in notes
    example = EXAMPLE.read_text(encoding="utf-8")
    assert "later milter (a DKIM signer) tempfailed still counts" in " ".join(
        line.lstrip("# ") for line in example.splitlines())
    assert (REPO / "tests" / "e2e" / "test_milter_chain.py").is_file()


def test_the_upgrade_procedure_says_to_stop_earlier_admin_instances_across_0046() -> None:
    """An admin instance of a release before migration 0046 reads an api_call's body
    template from the plain column only, so once this version seals it at start (or
    stores one sealed) the earlier instance posts ``null`` in its place: the rolling
    restart of the upgrade procedure does not hold across 0046, and it says so, and
    that going back to the earlier version leaves it so."""
    assert "0046_webhook_body_template_secret" in {m.version for m in available_migrations()}
    assert "seal_plain_templates" in inspect.getsource(worker_context)
    text = README.read_text(encoding="utf-8")
    procedure = text[text.index("- **Upgrade procedure.**"):text.index("- **Retention.**")]
    step = " ".join(procedure[procedure.index("  3. "):procedure.index("  4. ")].split())
    assert "before migration 0046" in step and "stop every" in step
    assert "`null`" in step
    # Going back to the earlier version reads them so too, and it cannot change them.
    assert "Going back to an earlier version" in step and "create it again" in step


def _upgrading_item() -> str:
    """The README's Operations item on what this version changes for a running setup."""
    text = README.read_text(encoding="utf-8")
    start = text.index("- **Upgrading.**")
    return " ".join(text[start:text.index("\n## ", start)].split())


def test_the_upgrading_notes_name_what_this_version_changes_for_api_clients() -> None:
    """A client or admin of the last release notices these (their answers or mail
    change shape), so the notes must name each: a delete's 200 with warnings (it was 204
    without a body), the write-only body template, the Slack escaping of api_call
    values, the stricter base64, links without rel, the re-typed single-file message,
    the refused right/ zones, the cut export, the new upload warning and the push's
    printed warnings, the sendmail refusal on an IPv6-only Postfix."""
    delete = WEBHOOK_PATHS["/api/v1/webhooks/{id}"]["delete"]["responses"]
    assert "200" in delete and "204" not in delete
    assert WEBHOOK_SCHEMAS["Webhook"]["properties"]["body_template"] == \
        WEBHOOK_SCHEMAS["Webhook"]["properties"]["secret"]
    notes = _upgrading_item()
    phrases = ['`DELETE /api/v1/webhooks/{id}` answers 200 with `{"warnings": [...]}`, '
               "no longer 204", '`body_template` is write-only, shown as `{"is_set": true}`',
               "even the stored one", "for a Slack URL have `&`, `<` and `>` escaped",
               "`YWJj=`", 'no longer gain `rel="noopener noreferrer"`',
               "`target` only as `_blank`", "`text/plain; charset=utf-8`",
               "tzdata's `right/` zones", "ends without its last chunk",
               "`test_expect_rules_invalid` warning", "`FILE:LINE:COLUMN: warning: ...`",
               "IPv6-only Postfix"]
    assert [phrase for phrase in phrases if phrase not in notes] == []


SKIPPED = ["inbound.yaml~", "#inbound.yaml#", ".#inbound.yaml", ".inbound.yaml.swp",
           "inbound.yaml.bak", ".inbound.yaml.Xy12Ab", ".inbound.yaml.new"]


def test_the_files_a_policy_directory_skips_are_those_the_language_doc_names(
    tmp_path: Path,
) -> None:
    """Each is a policy of the same name, which loaded would refuse the set."""
    source = "version: 1\nname: inbound\nrules:\n  - {name: a, then: reject}\n"
    for name in ["inbound.yaml", *SKIPPED]:
        (tmp_path / name).write_text(source, encoding="utf-8")
    assert [p.name for p in load_policy_set([tmp_path]).policies] == ["inbound"]
    doc = " ".join(POLICY_LANGUAGE.read_text(encoding="utf-8").split())
    assert all(f"`{name}`" in doc or name.endswith(".bak") for name in SKIPPED)
    assert "then rename it into place (`mv`)" in doc


def test_a_policy_file_cut_short_loads_as_the_doc_warns(tmp_path: Path) -> None:
    """Why the doc says to rename a file into place: half of one is a valid policy."""
    whole = ("version: 1\nname: p\nrules:\n  - {name: a, then: accept}\n"
             "  - {name: b, then: reject}\n")
    (tmp_path / "p.yaml").write_text(whole[:whole.index("  - {name: b")], encoding="utf-8")
    (rule,) = load_policy_set([tmp_path]).policies[0].rules
    assert rule.name == "a"
    assert "can be loaded half-written, and a file cut after its" in " ".join(
        POLICY_LANGUAGE.read_text(encoding="utf-8").split())


def _verdict_table() -> dict[str, str]:
    """docs/api.md's "Audit verdicts" table: each verdict -> its row."""
    text = API_DOC.read_text(encoding="utf-8")
    start = text.index("### Audit verdicts")
    section = text[start:text.index("\n#", start + 1)]
    return dict(re.findall(r"^\| `(\w+)` \|(.*)$", section, re.M))


def test_the_api_doc_says_what_every_audit_verdict_means() -> None:
    """Every action an audit row can carry, as the milter writes it (its verdict names,
    and every literal its handler ends a transaction with) and the audit search takes
    it, has its row in the doc, and no other: a new verdict cannot go unexplained."""
    written = set(re.findall(r'(?:_finish|_refuse)\((?:Reply\.\w+, )?"(\w+)"',
                             inspect.getsource(handler)))
    assert written and written <= set(VERDICTS)
    assert set(ACTIONS) == set(VERDICTS)
    table = _verdict_table()
    assert sorted(table) == sorted(VERDICTS)
    aborted = " ".join(table["aborted"].split())
    for cause in ("RSET", "QUIT", "lost connection", "`header_checks` REJECT or DISCARD",
                  "`message_size_limit`", "`stop_deadline`", "answered 250"):
        assert cause in aborted, cause


def test_the_api_doc_gives_a_proxy_the_longest_a_lock_wait_takes() -> None:
    """A frozen database is answered 503 within a proxy's 60 s but for a wait for a
    webhook DELETE's lock (row_wait_seconds), whose bound the doc gives."""
    options = WebhookOptions()
    extra = row_wait_seconds(options) - options.timeout_seconds
    text = " ".join(API_DOC.read_text().split())
    assert f"`webhook_timeout_seconds` plus {extra:g} seconds" in text
    assert f"({row_wait_seconds(options):g} seconds by default)" in text


# What an admin installing from the documents reads: each file they link or name
# under contrib/ or docs/ is there (a rename would leave the install steps pointing
# at nothing).
INSTALL_DOCS = [README, REPO / "SECURITY.md", POSTFIX_README,
                REPO / "contrib" / "systemd" / "README.md", API_DOC, POLICY_LANGUAGE]
LINK = re.compile(r"\]\((?!https?:|mailto:)([^)#\s]+)")
NAMED = re.compile(r"`((?:contrib|docs)/[\w./-]+)`")


def test_every_file_the_install_documents_link_or_name_exists() -> None:
    missing, checked = [], 0
    for doc in INSTALL_DOCS:
        text = doc.read_text(encoding="utf-8")
        targets = [doc.parent / link for link in LINK.findall(text)]
        targets += [REPO / named for named in NAMED.findall(text)]
        missing += [f"{doc.relative_to(REPO)}: {target.relative_to(REPO)}"
                    for target in targets if not target.exists()]
        checked += len(targets)
    assert missing == []
    assert checked > 30  # the links were found at all


def test_the_postfix_steps_name_every_file_of_contrib_postfix() -> None:
    """An admin follows the numbered steps: the send API's listener, appended to
    master.cf, is one of them (the admin example's relay_port 10026 waits for it)."""
    text = POSTFIX_README.read_text(encoding="utf-8")
    steps = text[text.index("1. "):text.index("\n\n", text.index("1. "))]
    files = sorted(p.name for p in POSTFIX_README.parent.iterdir() if p.name != "README.md")
    assert [name for name in files if f"`{name}`" not in steps] == []
