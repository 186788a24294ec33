"""The policy classifier: what makes mail confidential, which mode applies, and where it says so."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from gateway.classify.policy import PolicyError, decide, load_policy, strip_subject_tags

POLICY = """\
[confidential]
subject_tags = ["[secure]", "[confidential]"]
strip_tags = true
headers = { "Sensitivity" = ["Company-Confidential", "Private"], \
"X-Sealgate-Confidential" = ["yes"] }

[default]
mode = "require-tls"

[[domain]]
match = "partner-bank.example"
mode = "require-verified-tls"

[[domain]]
match = "*.patients.example"
mode = "pickup"
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "10-main.toml").write_text(POLICY)
    return tmp_path


def headers(text: str) -> email.message.Message:
    return email.message_from_string(text + "\n\n", policy=email.policy.default)


def test_subject_tag_anywhere_any_case_makes_mail_confidential(policy_dir: Path) -> None:
    decision = decide(load_policy(policy_dir), headers("Subject: Re: Fw: [SeCuRe] results"),
                      "a@x.example")
    assert decision.confidential
    assert "[secure]" in decision.why and "10-main.toml:2" in decision.why


def test_sensitivity_header_makes_mail_confidential(policy_dir: Path) -> None:
    decision = decide(load_policy(policy_dir), headers("Subject: hi\nSensitivity: private"),
                      "a@x.example")
    assert decision.confidential and "Sensitivity" in decision.why


def test_unrelated_header_value_is_not_confidential(policy_dir: Path) -> None:
    decision = decide(load_policy(policy_dir), headers("Subject: hi\nSensitivity: Personal"),
                      "a@x.example")
    assert not decision.confidential and decision.mode == "opportunistic"


def test_first_matching_domain_rule_gives_the_mode_and_its_line(policy_dir: Path) -> None:
    decision = decide(load_policy(policy_dir), headers("Subject: [secure] x"),
                      "a@partner-bank.example")
    assert decision.mode == "require-verified-tls"
    assert decision.rule.endswith("10-main.toml:9")


def test_wildcard_rule_matches_subdomains_only(policy_dir: Path) -> None:
    policy = load_policy(policy_dir)
    secure = headers("Subject: [secure] x")
    assert decide(policy, secure, "p@north.patients.example").mode == "pickup"
    assert decide(policy, secure, "p@patients.example").mode == "require-tls"


def test_default_mode_applies_when_no_rule_matches(policy_dir: Path) -> None:
    decision = decide(load_policy(policy_dir), headers("Subject: [secure] x"),
                      "a@elsewhere.example")
    assert decision.mode == "require-tls" and "[default]" in decision.rule


def test_files_are_merged_in_name_order(policy_dir: Path) -> None:
    (policy_dir / "20-extra.toml").write_text(
        '[[domain]]\nmatch = "law.example"\nmode = "pickup"\n')
    decision = decide(load_policy(policy_dir), headers("Subject: [secure] x"), "a@law.example")
    assert decision.mode == "pickup" and "20-extra.toml:1" in decision.rule


def test_tags_are_stripped_case_insensitively(policy_dir: Path) -> None:
    assert (strip_subject_tags(load_policy(policy_dir), "Re: [SECURE]  Lab results")
            == "Re: Lab results")


@pytest.mark.parametrize("text, expected", [
    ('[default]\nmode = "maybe"\n', "bad.toml:2: mode 'maybe' is not one of"),
    ('[defualt]\nmode = "pickup"\n', "bad.toml:1: unknown section [defualt]"),
    ('[[domain]]\nmatch = "x.example"\nmod = "pickup"\n', "bad.toml:3: unknown key 'mod'"),
    ('[[domain]]\nmatch = "not a domain"\nmode = "pickup"\n', "bad.toml:1: match 'not a domain'"),
    ('[[domain]]\nmatch = "x.example"\n\nmode = "never"\n', "bad.toml:4: mode 'never'"),
    ('[[domain]]\nmatch = "a.example"\nmode = "pickup"\n\n[[domain]]\nmatch = "a.example"\n'
     'mode = "pickup"\n', "bad.toml:5: duplicate rule for 'a.example' (first at"),
    ('[default\nmode = "pickup"\n', "bad.toml:1:"),
])
def test_invalid_policy_errors_name_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(PolicyError) as error:
        load_policy(tmp_path)
    assert expected in str(error.value)


def test_shipped_example_policy_is_valid() -> None:
    policy = load_policy(Path(__file__).resolve().parent.parent / "policies")
    assert policy.default_mode == "require-tls" and policy.subject_tags
