"""[[rule]] conditions, alone and combined, in order; what a match says of where it held."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from gateway.classify.message import classify
from gateway.classify.policy import Decision, Policy, PolicyError, load_policy


def policy_of(tmp_path: Path, text: str) -> Policy:
    (tmp_path / "rules.toml").write_text(text)
    return load_policy(tmp_path)


def message(subject: str = "hello", body: str = "nothing to see", sender: str = "a@clinic.test",
            to: str = "b@partner.test", **headers: str) -> EmailMessage:
    result = EmailMessage()
    result["From"], result["To"], result["Subject"] = sender, to, subject
    for name, value in headers.items():
        result[name.replace("_", "-")] = value
    result.set_content(body)
    return result


def decide_on(policy: Policy, mail: EmailMessage, rcpt: str = "b@partner.test",
              sender: str = "") -> Decision:
    data = mail.as_bytes(policy=SMTP)
    chunks = [data[i:i + 100] for i in range(0, len(data), 100)]
    return classify(policy, chunks, [rcpt], sender)[0]


def rule(conditions: str, confidential: str = "true", name: str = "r") -> str:
    return f'[[rule]]\nname = "{name}"\n{conditions}\nconfidential = {confidential}\n\n'


def test_subject_regex_makes_mail_confidential(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('subject_regex = "(?i)lab results"'))
    decision = decide_on(policy, message(subject="Your LAB RESULTS"))
    assert decision.confidential and decision.where == ("Subject",)


def test_subject_regex_that_does_not_match_leaves_mail_ordinary(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('subject_regex = "(?i)lab results"'))
    assert not decide_on(policy, message(subject="lunch")).confidential


def test_sender_address_matches_the_envelope_sender(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('sender = "hr@clinic.test"'))
    assert decide_on(policy, message(), sender="HR@clinic.test").confidential
    assert not decide_on(policy, message(), sender="other@clinic.test").confidential


def test_sender_domain_pattern_matches_the_from_field_without_an_envelope(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('sender = "*@payroll.test"'))
    assert decide_on(policy, message(sender="Pay <run@payroll.test>")).confidential
    assert not decide_on(policy, message(sender="run@sub.payroll.test")).confidential


def test_recipient_domain_decides_per_recipient(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('recipient_domain = ["*.insurer.test"]'))
    assert decide_on(policy, message(), rcpt="x@claims.insurer.test").confidential
    assert not decide_on(policy, message(), rcpt="x@partner.test").confidential


def test_header_condition_matches_a_value_case_insensitively(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('header = { "X-Priority" = ["1*"] }'))
    decision = decide_on(policy, message(X_Priority="1 (Highest)"))
    assert decision.confidential and decision.where == ("header X-Priority",)
    assert not decide_on(policy, message(X_Priority="3")).confidential


def test_body_regex_searches_the_text(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule(r'body_regex = "(?i)\\bMRN[: ]+\\d{6,}"'))
    decision = decide_on(policy, message(body="Patient MRN: 00123456"))
    assert decision.confidential and decision.where == ("body_regex in part 1 (text/plain)",)
    assert not decide_on(policy, message(body="MRN unknown")).confidential


def test_attachment_name_glob_matches_the_filename(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('attachment_name = ["*.xlsx"]'))
    mail = message()
    mail.add_attachment(b"data", maintype="application", subtype="octet-stream",
                        filename="Patients.XLSX")
    decision = decide_on(policy, mail)
    assert decision.confidential
    assert decision.where == ("attachment 'Patients.XLSX' (part 2, application/octet-stream)",)


def test_attachment_name_that_differs_does_not_match(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('attachment_name = ["*.xlsx"]'))
    mail = message()
    mail.add_attachment(b"data", maintype="application", subtype="pdf", filename="menu.pdf")
    assert not decide_on(policy, mail).confidential


def test_attachment_type_matches_the_declared_type(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('attachment_type = ["image/*"]'))
    mail = message()
    mail.add_attachment(b"not really", maintype="image", subtype="png", filename="x.png")
    assert decide_on(policy, mail).confidential


def test_all_conditions_of_a_rule_must_hold(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('subject_regex = "report"\nsender = "*@lab.test"'))
    assert decide_on(policy, message(subject="report", sender="x@lab.test")).confidential
    assert not decide_on(policy, message(subject="report", sender="x@other.test")).confidential
    assert not decide_on(policy, message(subject="menu", sender="x@lab.test")).confidential


def test_min_count_needs_that_many_findings(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('detect = ["us-ssn", "payment-card"]\nmin_count = 2'))
    assert not decide_on(policy, message(body="SSN 536-22-1234")).confidential
    decision = decide_on(policy, message(body="SSN 536-22-1234, card 4111 1111 1111 1111"))
    assert decision.confidential
    assert decision.where == ("us-ssn x1 in part 1 (text/plain)",
                              "payment-card x1 in part 1 (text/plain)")


def test_first_matching_rule_decides_and_an_exemption_wins_when_first(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('sender = "*@newsletter.test"', "false", "news")
                       + rule('detect = ["us-ssn"]', name="ssn"))
    exempt = decide_on(policy, message(body="SSN 536-22-1234", sender="n@newsletter.test"))
    assert not exempt.confidential and exempt.content_rule == "news"
    assert "exempted by [[rule]] 'news' at" in exempt.why
    assert decide_on(policy, message(body="SSN 536-22-1234")).content_rule == "ssn"


def test_exemption_after_a_confidential_rule_does_not_apply(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('detect = ["us-ssn"]', name="ssn")
                       + rule('sender = "*@newsletter.test"', "false", "news"))
    decision = decide_on(policy, message(body="SSN 536-22-1234", sender="n@newsletter.test"))
    assert decision.confidential and decision.content_rule == "ssn"


def test_subject_tag_is_not_undone_by_an_exemption(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, '[confidential]\nsubject_tags = ["[secure]"]\n\n'
                       + rule('sender = "*@newsletter.test"', "false"))
    assert decide_on(policy, message(subject="[secure] x", sender="n@newsletter.test")).confidential


def test_rule_mode_applies_when_stricter_than_the_domain_mode(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('detect = ["us-ssn"]\nmode = "pickup"', name="ssn"))
    decision = decide_on(policy, message(body="SSN 536-22-1234"))
    assert decision.mode == "pickup" and decision.rule.startswith("mode of [[rule]] 'ssn'")


def test_domain_mode_stays_when_stricter_than_the_rule_mode(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, '[[domain]]\nmatch = "partner.test"\nmode = "pickup"\n\n'
                       + rule('detect = ["us-ssn"]\nmode = "require-tls"'))
    assert decide_on(policy, message(body="SSN 536-22-1234")).mode == "pickup"


def test_decision_names_the_rule_file_and_line_never_the_matched_text(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "\n\n" + rule('detect = ["us-ssn"]', name="ssn"))
    decision = decide_on(policy, message(body="SSN 536-22-1234"))
    assert f"[[rule]] 'ssn' at {tmp_path}/rules.toml:3" in decision.why
    assert "536" not in decision.why and "536" not in str(decision.as_dict())


def test_rule_line_numbers_follow_each_rule(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('subject_regex = "a"', name="one")
                       + rule('subject_regex = "b"', name="two"))
    assert [r.origin.line for r in policy.content_rules] == [1, 6]


def test_header_only_rule_decides_before_the_body_is_read(tmp_path: Path) -> None:
    from gateway.classify.policy import decide, read_header_section

    policy = policy_of(tmp_path, rule('subject_regex = "report"') + rule('detect = ["us-ssn"]'))
    section = read_header_section(b"Subject: report\r\n")
    assert decide(policy, section, "x@partner.test").confidential
    other = read_header_section(b"Subject: hi\r\n")
    assert not decide(policy, other, "x@partner.test").confidential


@pytest.mark.parametrize(("text", "error"), [
    (rule('detect = ["us-passport"]'), "rules.toml:3: unknown detector 'us-passport'"),
    (rule('body_regex = "(a+)+$"'), "rules.toml:3: body_regex '(a+)+$' is refused: a quantifier"),
    (rule('subject_regex = "(x|xy)*z"'), "rules.toml:3: subject_regex '(x|xy)*z' is refused"),
    (rule('body_regex = "([a-z"'), "rules.toml:3: body_regex '([a-z' is not a valid regular"),
    ('[[rule]]\nname = "n"\nconfidential = true\n', "rules.toml:1: [[rule]] 'n' has no condition"),
    ('[[rule]]\nsubject_regex = "x"\n', "rules.toml:1: [[rule]] 'rule 1' needs confidential"),
    (rule('subject_regex = "x"\ncolour = "red"'), "rules.toml:4: unknown key 'colour'"),
    (rule('sender = "not an address"'), "rules.toml:3: sender 'not an address' must be"),
    (rule('attachment_type = "pdf"'), "rules.toml:3: 'pdf' is not a MIME type"),
    (rule('subject_regex = "x"\nmin_count = 2'), "rules.toml:4: min_count applies to detect"),
    (rule('detect = ["iban"]\nmin_count = 0'), "rules.toml:4: min_count must be a whole number"),
    (rule('subject_regex = "x"\nmode = "later"'), "rules.toml:4: mode 'later' is not one of"),
    ('[policy]\nscan_limit = "lots"\n', "rules.toml:2: scan_limit: expected a number"),
    ('[policy]\non_scan_error = "shrug"\n', "rules.toml:2: on_scan_error must be one of"),
])
def test_bad_rule_is_an_error_at_its_line(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(PolicyError) as raised:
        policy_of(tmp_path, text)
    assert error in str(raised.value)


def test_possessive_and_atomic_regexes_are_accepted(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule('body_regex = "(?>a+)+b|(?:c++)+d"'))
    assert policy.content_rules[0].body_regex is not None


def test_scan_settings_are_read_from_the_policy_section(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, '[policy]\nscan_limit = "512KiB"\non_scan_error = "ignore"\n')
    assert policy.scan.scan_limit == 512 * 1024 and policy.scan.on_scan_error == "ignore"


def test_body_regex_prefilter_keeps_case_insensitive_matches(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, rule(r'body_regex = "(?i)medical (?:record|chart)s?\\b"'))
    assert decide_on(policy, message(body="Attached: MEDICAL Records of May")).confidential
    assert not decide_on(policy, message(body="medicinal herbs")).confidential


def test_body_regex_matches_non_ascii_text_the_prefilter_cannot_judge(tmp_path: Path) -> None:
    """The long s folds to s under IGNORECASE, but lower-casing keeps it: no prefilter."""
    policy = policy_of(tmp_path, rule('body_regex = "(?i)passport"'))
    assert decide_on(policy, message(body="pa\u017f\u017fport number X")).confidential
