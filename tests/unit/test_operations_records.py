"""relentad.dnsrecords and the pure checks of relentad.doctor: record text, certificate expiry and names."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from relentad import config as config_mod
from relentad import dnsrecords, doctor, metrics
from relentad.queue import dkimkeys
from relentad.smtp import replies
from relentad.tls import make_self_signed


def make_config(tmp_path: Path, **listen: str) -> config_mod.Config:
    data = {
        "server": {"hostname": "mx.example.com", "data_dir": str(tmp_path / "data")},
        "listen": {"smtp": "93.184.216.34:25", "submission": "*:587", "submissions": "", "imap": "", "imaps": "*:993"}
        | listen,
    }
    return config_mod.from_dict(data, tmp_path / "relentad.toml")


def by_name(records: list[dnsrecords.Record], name: str, rtype: str) -> dnsrecords.Record:
    [record] = [r for r in records if r.name == name and r.rtype == rtype]
    return record


def test_records_follow_the_configuration(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    records = dnsrecords.records(config, "Example.COM")
    assert by_name(records, "example.com", "MX").value == "10 mx.example.com"
    assert by_name(records, "mx.example.com", "A").value == "93.184.216.34"  # a public listener address
    assert by_name(records, "example.com", "TXT").value == "v=spf1 mx -all"
    dkim = [r for r in records if r.name.endswith("._domainkey.example.com")]
    assert len(dkim) == 1 and dkim[0].value is None and "relentad dkim generate example.com" in dkim[0].hint
    assert by_name(records, "_submission._tcp.example.com", "SRV").value == "0 1 587 mx.example.com"
    assert by_name(records, "_imap._tcp.example.com", "SRV").value == "0 0 0 ."  # listener off
    assert by_name(records, "_imaps._tcp.example.com", "SRV").zone_line().endswith("0 1 993 mx.example.com.")
    assert by_name(records, "_sieve._tcp.example.com", "SRV").value == "0 1 4190 mx.example.com"  # RFC 5804 §1.8
    carddav = by_name(records, "_carddavs._tcp.example.com", "SRV")  # RFC 6764: the web listener's port
    assert carddav.value == "0 1 443 mx.example.com" and not carddav.required
    assert by_name(records, "_pop3._tcp.example.com", "SRV").value == "10 1 110 mx.example.com", "IMAP first"
    assert by_name(records, "_pop3s._tcp.example.com", "SRV").value == "10 1 995 mx.example.com"


def test_dkim_record_is_the_key_on_disk_and_long_txt_is_split(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    dkimkeys.generate(config.data_dir, "example.com", "s1")
    record = by_name(dnsrecords.records(config, "example.com"), "s1._domainkey.example.com", "TXT")
    assert record.value is not None and record.value.startswith("v=DKIM1; k=rsa; p=")
    line = record.zone_line()
    strings = line.split(" IN TXT ", 1)[1].split('" "')
    assert len(strings) == 2 and "".join(strings).strip('"') == record.value  # RSA-2048 needs two strings


def test_dkim_records_list_the_active_pending_and_previous_keys(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    dkimkeys.generate(config.data_dir, "example.com", "s1")
    dkimkeys.generate(config.data_dir, "example.com", "s2", ed25519=True)
    keys = dkimkeys.load(config.data_dir, "example.com")
    assert keys is not None and keys.selector == "s1", "a second key is not used before it is activated"
    records = dnsrecords.records(config, "example.com")
    assert by_name(records, "s1._domainkey.example.com", "TXT").required
    for name in ("s2._domainkey.example.com", "s2-ed25519._domainkey.example.com"):
        pending = by_name(records, name, "TXT")
        assert not pending.required and "relentad dkim activate example.com s2" in pending.purpose
    assert dkimkeys.activate(config.data_dir, "example.com", "s2") == "s1"
    keys = dkimkeys.load(config.data_dir, "example.com")
    assert keys is not None and keys.selector == "s2" and keys.ed25519 is not None
    records = dnsrecords.records(config, "example.com")
    assert by_name(records, "s2._domainkey.example.com", "TXT").required
    previous = by_name(records, "s1._domainkey.example.com", "TXT")
    assert not previous.required and "previous" in previous.purpose
    assert dkimkeys.retire(config.data_dir, "example.com") == "s1"
    names = [r.name for r in dnsrecords.records(config, "example.com") if "_domainkey" in r.name]
    assert names == ["s2._domainkey.example.com", "s2-ed25519._domainkey.example.com"]


def test_keyring_aligned_keys_stop_at_the_organisational_domain(tmp_path: Path) -> None:
    """Mail From mx.mail.example.com is signed with the nearest parent's key (relaxed DMARC alignment), never with
    a key outside its organisational domain."""
    dkimkeys.generate(tmp_path, "example.com", "s1")
    dkimkeys.generate(tmp_path, "co.uk", "s1")  # a public suffix: nobody's key aligns with it
    ring = dkimkeys.KeyRing(tmp_path)
    found = ring.aligned("mx.mail.example.com")
    assert found is not None and found.domain == "example.com"
    assert ring.get("mx.mail.example.com") is None
    assert ring.aligned("mx.example.co.uk") is None
    dkimkeys.generate(tmp_path, "mail.example.com", "s1")
    nearer = ring.aligned("MX.mail.example.com.")
    assert nearer is not None and nearer.domain == "mail.example.com"


def test_mta_sts_policy_id_changes_with_the_policy(tmp_path: Path) -> None:
    one = make_config(tmp_path)
    two = config_mod.from_dict({"server": {"hostname": "mail2.example.com"}}, tmp_path / "relentad.toml")
    assert "mx: mx.example.com" in dnsrecords.mta_sts_policy(one)
    assert dnsrecords.mta_sts_id(one) != dnsrecords.mta_sts_id(two)
    assert dnsrecords.mta_sts_id(one).isalnum() and len(dnsrecords.mta_sts_id(one)) <= 32


def test_certificate_checks(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key, ["other.example.com", "*.example.com"], days=10)
    config = config_mod.from_dict(
        {"server": {"hostname": "mx.example.com"}, "tls": {"cert": str(cert), "key": str(key)}},
        tmp_path / "relentad.toml",
    )
    findings = {f.check: f for f in doctor.check_certificate(config)}
    assert findings["tls expiry"].status == "warn"  # 10 days left
    assert findings["tls names"].status == "ok"  # the wildcard covers mx.example.com
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=11)
    assert {f.check: f for f in doctor.check_certificate(config, later)}["tls expiry"].status == "fail"
    other = config_mod.from_dict(
        {"server": {"hostname": "a.b.example.com"}, "tls": {"cert": str(cert), "key": str(key)}},
        tmp_path / "relentad.toml",
    )
    names = {f.check: f for f in doctor.check_certificate(other)}["tls names"]
    assert names.status == "fail" and "certbot" in names.fix
    assert doctor.check_certificate(make_config(tmp_path))[0].status == "fail"  # no certificate at all


def test_rejection_reasons_are_named() -> None:
    assert metrics.reason_of(replies.RELAY_DENIED) == "relay_denied"
    assert metrics.reason_of(replies.STORE_FAILED + "\r\n") == "store_failed"
    assert metrics.reason_of("535 5.7.8 Authentication credentials invalid") == "5.7.8"
    assert metrics.reason_of(replies.blocklisted("192.0.2.1", "bl.test (127.0.0.2)")) == "dnsbl"
    assert metrics.reason_of("500 Error") == "500"


def test_doctor_warns_when_the_certificate_misses_the_web_names(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key, ["mx.example.com", "*.example.com"])
    config = config_mod.from_dict(
        {
            "server": {"hostname": "mx.example.com", "data_dir": str(tmp_path / "data")},
            "listen": {"https": "*:443"},
            "tls": {"cert": str(cert), "key": str(key)},
        },
        tmp_path / "relentad.toml",
    )
    [covered] = doctor.check_web_names(config, ["example.com"])  # the wildcard names all three
    assert covered.status == "ok"
    [finding] = doctor.check_web_names(config, ["example.com", "other.test"])
    assert finding.status == "warn" and "mta-sts.other.test, autoconfig.other.test" in finding.message
    assert "example.com" not in finding.message.replace("mx.example.com", "")
    off = config_mod.from_dict({"listen": {"https": ""}, "tls": {"cert": str(cert), "key": str(key)}}, config.path)
    assert doctor.check_web_names(off, ["other.test"]) == []
    records = dnsrecords.records(config, "example.com")
    assert "relentad's [listen] https serves" in by_name(records, "mta-sts.example.com", "CNAME").purpose
    assert "served by relentad as https://mta-sts.example.com/" in dnsrecords.render(config, "example.com")


def test_doctor_warns_when_dane_trusts_a_resolver_across_the_network(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    [local] = doctor.check_resolver(config, ["127.0.0.1", "::1"])
    assert local.status == "ok" and "127.0.0.1, ::1" in local.message
    [remote] = doctor.check_resolver(config, ["127.0.0.53", "192.0.2.53"])
    assert remote.status == "warn" and "192.0.2.53, which is not on this machine" in remote.message
    assert "127.0.0.53" not in remote.message and "127.0.0.1:53" in remote.fix
    off = dataclasses.replace(config, queue=dataclasses.replace(config.queue, dane=False))
    assert doctor.check_resolver(off, ["192.0.2.53"]) == []
    relayed = dataclasses.replace(config, queue=dataclasses.replace(config.queue, smarthost="relay.example:587"))
    assert doctor.check_resolver(relayed, ["192.0.2.53"]) == [], "no DANE through a smarthost"


def test_tlsa_record_with_acme_names_the_ca_not_our_key(tmp_path: Path) -> None:
    """[acme] makes a new key at every renewal: its certificate (not [tls] cert, empty) is the one checked, and the
    record printed is a placeholder for the CA's intermediates, never a 3 1 1 of today's key."""
    config = config_mod.from_dict(
        {"server": {"hostname": "mx.example.com", "data_dir": str(tmp_path / "data")}, "acme": {"enabled": True}},
        tmp_path / "relentad.toml",
    )
    assert dnsrecords.tlsa_record(config) is None, "no certificate yet"
    cert, key = config.cert_files()
    cert.parent.mkdir(parents=True)
    make_self_signed(cert, key, ["mx.example.com"])
    assert len(dnsrecords.certificate_chain(config)) == 1
    record = dnsrecords.tlsa_record(config)
    assert record is not None and record.value is None
    assert record.zone_line().startswith("; _25._tcp.mx.example.com. IN TLSA <2 1 1 ")


def test_doctor_warns_of_listeners_on_by_default(tmp_path: Path) -> None:
    path = tmp_path / "relentad.toml"
    parsed = config_mod.from_dict({"listen": {"pop3": "", "managesieve": "127.0.0.1:4190"}}, path=path)
    findings = doctor.check_listen_defaults(parsed)
    assert [f.check for f in findings] == [
        "port smtp",
        "port submission",
        "port submissions",
        "port imap",
        "port imaps",
        "port pop3s",
        "port https",
    ]
    assert all(f.status == "warn" for f in findings)
    assert findings[5].message == f"*:995 is on by default: [listen] pop3s is not in {path}"
    assert findings[5].fix == 'set [listen] pop3s = "*:995" to keep it, or "" to turn it off'
