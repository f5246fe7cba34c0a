"""Failed-login throttling and the credential cache, with a fake clock."""

from __future__ import annotations

from relentad.auth.authenticator import CredentialCache
from relentad.auth.throttle import FailureCounter, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_by_ip_then_by_account_and_the_window_ends_it() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    limits = {"per_ip": 3, "per_account": 5, "window": 60.0}
    for _ in range(3):
        assert throttle.blocked("192.0.2.1", "alice@a.test", **limits) is None
        throttle.failed("192.0.2.1", "alice@a.test", 60.0)
    assert throttle.blocked("192.0.2.1", "bob@a.test", **limits) == "ip"
    assert throttle.blocked("192.0.2.2", "alice@a.test", **limits) is None
    for ip in ("192.0.2.2", "192.0.2.3"):
        throttle.failed(ip, "ALICE@a.test", 60.0)
    assert throttle.blocked("192.0.2.9", "alice@a.test", **limits) == "account"
    clock.now += 61
    assert throttle.blocked("192.0.2.1", "alice@a.test", **limits) is None
    assert len(throttle.by_ip) == 2, "an expired key is dropped when next looked at"


def test_zero_limit_means_no_throttle() -> None:
    throttle = LoginThrottle(Clock())
    for _ in range(50):
        throttle.failed("192.0.2.1", "a@a.test", 60.0)
    assert throttle.blocked("192.0.2.1", "a@a.test", per_ip=0, per_account=0, window=60.0) is None


def test_failure_counter_prunes() -> None:
    clock = Clock()
    counter = FailureCounter(clock)
    for i in range(1500):
        counter.record(f"k{i}", 10.0)
        clock.now += 0.1
    assert len(counter) < 1500


def test_cache_hits_only_with_same_password_and_hash_and_expires() -> None:
    clock = Clock()
    cache = CredentialCache(clock)
    cache.put("Alice@a.test", "secret", 7, "$argon2id$one", ttl=60)
    assert cache.get("alice@a.test", "secret", "$argon2id$one") == 7
    assert cache.get("alice@a.test", "wrong", "$argon2id$one") is None
    assert cache.get("alice@a.test", "secret", "$argon2id$two") is None, "a password change drops the entry"
    assert cache.get("alice@a.test", "secret", "$argon2id$one") is None, "and it stays dropped"
    cache.put("alice@a.test", "secret", 7, "$argon2id$one", ttl=60)
    clock.now += 61
    assert cache.get("alice@a.test", "secret", "$argon2id$one") is None
    cache.put("alice@a.test", "secret", 7, "h", ttl=0)
    assert len(cache) == 0, "ttl 0 turns the cache off"


def test_cache_keys_do_not_contain_the_password() -> None:
    cache = CredentialCache(Clock())
    cache.put("alice@a.test", "hunter2hunter2", 1, "h", ttl=60)
    assert all(b"hunter2" not in key for key in cache._entries)
