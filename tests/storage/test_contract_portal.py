"""Contract: portal accounts, verification codes, sessions, reset links and sign-in failures
(PortalStore). Limits are the caller's; the back-end applies them atomically."""

from __future__ import annotations

from collections.abc import Callable

from gateway.storage.protocols import (
    CodeCheck,
    CodeLimits,
    CodeSend,
    NewUser,
    ResetLimits,
    ResetLink,
    Storage,
    User,
)
from tests.storage.helpers import FakeClock

PAT = "pat@patients.test"
LIMITS = CodeLimits(lifetime=900, resend_interval=60, daily_limit=3, max_attempts=2)
RESETS = ResetLimits(lifetime=1800, interval=60, daily_limit=2)
NEW_PAT = NewUser(PAT, "Pat", "Ient", "hash-1", "Europe/Paris")


def registered(storage: Storage) -> Storage:
    assert storage.issue_code(PAT, "code-1", LIMITS) is CodeSend.SENT
    assert storage.redeem_code(NEW_PAT, "code-1", LIMITS).outcome is CodeCheck.OK
    return storage


# -- codes and registration -------------------------------------------------------------------

def test_a_right_code_creates_the_user(storage: Storage) -> None:
    registered(storage)
    assert storage.get_user(PAT) == User(PAT, "Pat", "Ient", "Europe/Paris")
    credentials = storage.get_credentials(PAT)
    assert credentials is not None and credentials.password_hash == "hash-1"


def test_unknown_address_has_no_user_or_credentials(storage: Storage) -> None:
    assert storage.get_user(PAT) is None and storage.get_credentials(PAT) is None


def test_a_wrong_code_counts_down_then_stops_working(storage: Storage) -> None:
    storage.issue_code(PAT, "code-1", LIMITS)
    first = storage.redeem_code(NEW_PAT, "wrong", LIMITS)
    assert (first.outcome, first.attempts_left) == (CodeCheck.WRONG, 1)
    assert storage.redeem_code(NEW_PAT, "wrong", LIMITS).outcome is CodeCheck.INVALID
    assert storage.redeem_code(NEW_PAT, "code-1", LIMITS).outcome is CodeCheck.INVALID
    assert storage.get_user(PAT) is None


def test_a_code_is_single_use(storage: Storage) -> None:
    registered(storage)
    again = NewUser(PAT, "Eve", "", "hash-2")
    assert storage.redeem_code(again, "code-1", LIMITS).outcome is CodeCheck.REGISTERED
    assert storage.get_user(PAT) == User(PAT, "Pat", "Ient", "Europe/Paris")


def test_a_code_expires(storage: Storage, clock: FakeClock) -> None:
    storage.issue_code(PAT, "code-1", LIMITS)
    clock.advance(LIMITS.lifetime)
    assert storage.redeem_code(NEW_PAT, "code-1", LIMITS).outcome is CodeCheck.INVALID


def test_a_new_code_ends_the_earlier_one(storage: Storage, clock: FakeClock) -> None:
    storage.issue_code(PAT, "code-1", LIMITS)
    clock.advance(LIMITS.resend_interval)
    storage.issue_code(PAT, "code-2", LIMITS)
    assert storage.redeem_code(NEW_PAT, "code-1", LIMITS).outcome is CodeCheck.WRONG
    assert storage.redeem_code(NEW_PAT, "code-2", LIMITS).outcome is CodeCheck.OK


def test_codes_wait_for_the_resend_interval(storage: Storage, clock: FakeClock) -> None:
    storage.issue_code(PAT, "code-1", LIMITS)
    clock.advance(LIMITS.resend_interval - 1)
    assert storage.issue_code(PAT, "code-2", LIMITS) is CodeSend.WAIT


def test_codes_stop_at_the_daily_limit(storage: Storage, clock: FakeClock) -> None:
    for n in range(LIMITS.daily_limit):
        assert storage.issue_code(PAT, f"code-{n}", LIMITS) is CodeSend.SENT
        clock.advance(LIMITS.resend_interval)
    assert storage.issue_code(PAT, "one-more", LIMITS) is CodeSend.LIMIT
    clock.advance(86400)
    assert storage.issue_code(PAT, "next-day", LIMITS) is CodeSend.SENT


# -- passwords and profile ------------------------------------------------------------------

def test_set_password_replaces_the_hash_and_ends_every_session(storage: Storage) -> None:
    registered(storage).start_session("s1", PAT, idle_timeout=600)
    storage.set_password(PAT, "hash-2")
    credentials = storage.get_credentials(PAT)
    assert credentials is not None and credentials.password_hash == "hash-2"
    assert storage.find_session("s1") is None


def test_replace_password_hash_keeps_sessions(storage: Storage) -> None:
    registered(storage).start_session("s1", PAT, idle_timeout=600)
    storage.replace_password_hash(PAT, "rehashed")
    credentials = storage.get_credentials(PAT)
    assert credentials is not None and credentials.password_hash == "rehashed"
    assert storage.find_session("s1") is not None


def test_time_zone_is_kept(storage: Storage) -> None:
    registered(storage).set_time_zone(PAT, "America/New_York")
    user = storage.get_user(PAT)
    assert user is not None and user.time_zone == "America/New_York"


# -- sessions -------------------------------------------------------------------------------

def test_a_session_finds_its_user_and_when_it_was_last_seen(storage: Storage,
                                                            clock: FakeClock) -> None:
    registered(storage).start_session("s1", PAT, idle_timeout=600)
    session = storage.find_session("s1")
    assert session is not None and session.user.address == PAT and session.last_seen == clock.now


def test_touch_session_moves_last_seen(storage: Storage, clock: FakeClock) -> None:
    registered(storage).start_session("s1", PAT, idle_timeout=600)
    clock.advance(30)
    storage.touch_session("s1")
    session = storage.find_session("s1")
    assert session is not None and session.last_seen == clock.now


def test_starting_a_session_ends_the_one_it_replaces(storage: Storage) -> None:
    registered(storage).start_session("s1", PAT, idle_timeout=600)
    storage.start_session("s2", PAT, idle_timeout=600, replacing="s1")
    assert storage.find_session("s1") is None and storage.find_session("s2") is not None


def test_starting_a_session_sweeps_idle_ones(storage: Storage, clock: FakeClock) -> None:
    registered(storage).start_session("old", PAT, idle_timeout=600)
    clock.advance(600)
    storage.start_session("new", PAT, idle_timeout=600)
    assert storage.find_session("old") is None


def test_end_session_and_end_all_sessions(storage: Storage) -> None:
    registered(storage)
    for token in ("s1", "s2", "s3"):
        storage.start_session(token, PAT, idle_timeout=600)
    storage.end_session("s1")
    assert storage.find_session("s1") is None and storage.portal_counts().sessions == 2
    storage.end_all_sessions(PAT)
    assert storage.portal_counts().sessions == 0


def test_registration_ends_sessions_left_for_the_address(storage: Storage) -> None:
    storage.start_session("stale", PAT, idle_timeout=600)  # from an account since removed
    registered(storage)
    assert storage.find_session("stale") is None


# -- reset links ----------------------------------------------------------------------------

def test_a_reset_link_for_an_unknown_address_is_refused(storage: Storage) -> None:
    assert storage.issue_reset("r1", PAT, "", RESETS) is False
    assert storage.peek_reset("r1") is None


def test_peeking_a_reset_link_spends_nothing(storage: Storage) -> None:
    assert registered(storage).issue_reset("r1", PAT, "pickup-1", RESETS)
    assert storage.peek_reset("r1") == ResetLink(PAT, "pickup-1")
    assert storage.peek_reset("r1") == ResetLink(PAT, "pickup-1")


def test_redeeming_a_reset_link_sets_the_password_once(storage: Storage) -> None:
    registered(storage).issue_reset("r1", PAT, "", RESETS)
    storage.start_session("s1", PAT, idle_timeout=600)
    assert storage.redeem_reset("r1", "hash-new") == ResetLink(PAT, "")
    credentials = storage.get_credentials(PAT)
    assert credentials is not None and credentials.password_hash == "hash-new"
    assert storage.find_session("s1") is None
    assert storage.redeem_reset("r1", "hash-again") is None


def test_a_reset_link_expires(storage: Storage, clock: FakeClock) -> None:
    registered(storage).issue_reset("r1", PAT, "", RESETS)
    clock.advance(RESETS.lifetime)
    assert storage.peek_reset("r1") is None and storage.redeem_reset("r1", "x") is None


def test_a_new_reset_link_ends_the_earlier_one(storage: Storage, clock: FakeClock) -> None:
    registered(storage).issue_reset("r1", PAT, "", RESETS)
    clock.advance(RESETS.interval)
    assert storage.issue_reset("r2", PAT, "", RESETS)
    assert storage.peek_reset("r1") is None and storage.peek_reset("r2") is not None


def test_reset_links_are_rate_limited(storage: Storage, clock: FakeClock) -> None:
    registered(storage).issue_reset("r1", PAT, "", RESETS)
    assert storage.issue_reset("r2", PAT, "", RESETS) is False  # within the interval
    clock.advance(RESETS.interval)
    assert storage.issue_reset("r3", PAT, "", RESETS)
    clock.advance(RESETS.interval)
    assert storage.issue_reset("r4", PAT, "", RESETS) is False  # daily limit


# -- sign-in failures -----------------------------------------------------------------------

def test_login_failures_are_counted_per_key_since_a_time(storage: Storage,
                                                         clock: FakeClock) -> None:
    storage.record_login_failures(["account:a", "client:1"], window=900)
    clock.advance(10)
    storage.record_login_failures(["account:a", "client:2"], window=900)
    assert storage.count_login_failures("account:a", clock.now - 900) == 2
    assert storage.count_login_failures("account:a", clock.now - 5) == 1
    assert storage.count_login_failures("client:2", 0) == 1


def test_login_failures_older_than_the_window_are_forgotten(storage: Storage,
                                                            clock: FakeClock) -> None:
    storage.record_login_failures(["account:a"], window=900)
    clock.advance(900)
    storage.record_login_failures(["account:b"], window=900)
    assert storage.count_login_failures("account:a", 0) == 0


def test_clearing_login_failures_touches_only_that_key(storage: Storage) -> None:
    storage.record_login_failures(["account:a", "client:1"], window=900)
    storage.clear_login_failures("account:a")
    assert storage.count_login_failures("account:a", 0) == 0
    assert storage.count_login_failures("client:1", 0) == 1


# -- counts and durability ------------------------------------------------------------------

def test_portal_counts_what_is_outstanding(storage: Storage, clock: FakeClock) -> None:
    assert storage.portal_counts().users == 0
    registered(storage).start_session("s1", PAT, idle_timeout=600)
    clock.advance(LIMITS.resend_interval)
    storage.issue_code("other@patients.test", "c", LIMITS)
    storage.issue_reset("r1", PAT, "", RESETS)
    storage.record_login_failures(["account:x"], window=900)
    counts = storage.portal_counts()
    assert (counts.users, counts.sessions, counts.open_codes, counts.open_resets,
            counts.login_failures) == (1, 1, 1, 1, 1)


def test_accounts_and_sessions_survive_reopening(storage: Storage,
                                                 reopen: Callable[[], Storage]) -> None:
    registered(storage).start_session("s1", PAT, idle_timeout=600)
    storage.record_login_failures(["account:a"], window=900)
    again = reopen()
    assert again.get_user(PAT) is not None and again.find_session("s1") is not None
    assert again.count_login_failures("account:a", 0) == 1


# -- signing in by code and the chosen language -----------------------------------------------

def test_a_sign_in_code_is_spent_without_changing_the_account(storage: Storage,
                                                              clock: FakeClock) -> None:
    registered(storage).start_session("s1", PAT, idle_timeout=600)
    clock.advance(LIMITS.resend_interval)
    assert storage.issue_code(PAT, "code-2", LIMITS) is CodeSend.SENT
    assert storage.redeem_sign_in_code(PAT, "code-2", LIMITS).outcome is CodeCheck.OK
    assert storage.redeem_sign_in_code(PAT, "code-2", LIMITS).outcome is CodeCheck.INVALID
    credentials = storage.get_credentials(PAT)
    assert credentials is not None and credentials.password_hash == "hash-1"
    assert storage.find_session("s1") is not None


def test_a_sign_in_code_stops_after_the_allowed_wrong_tries(storage: Storage,
                                                            clock: FakeClock) -> None:
    registered(storage)
    clock.advance(LIMITS.resend_interval)
    assert storage.issue_code(PAT, "code-2", LIMITS) is CodeSend.SENT
    wrong = storage.redeem_sign_in_code(PAT, "nope", LIMITS)
    assert (wrong.outcome, wrong.attempts_left) == (CodeCheck.WRONG, 1)
    assert storage.redeem_sign_in_code(PAT, "nope", LIMITS).outcome is CodeCheck.INVALID
    assert storage.redeem_sign_in_code(PAT, "code-2", LIMITS).outcome is CodeCheck.INVALID


def test_a_sign_in_code_expires(storage: Storage, clock: FakeClock) -> None:
    registered(storage)
    clock.advance(LIMITS.resend_interval)
    assert storage.issue_code(PAT, "code-2", LIMITS) is CodeSend.SENT
    clock.advance(LIMITS.lifetime + 1)
    assert storage.redeem_sign_in_code(PAT, "code-2", LIMITS).outcome is CodeCheck.INVALID


def test_a_sign_in_code_needs_an_account(storage: Storage) -> None:
    storage.issue_code(PAT, "code-1", LIMITS)
    assert storage.redeem_sign_in_code(PAT, "code-1", LIMITS).outcome is CodeCheck.INVALID
    assert storage.get_user(PAT) is None


def test_language_is_kept(storage: Storage) -> None:
    registered(storage).set_language(PAT, "es")
    user = storage.get_user(PAT)
    assert user is not None and user.language == "es"
