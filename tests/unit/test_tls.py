"""tls.PairWatcher: a renewed certificate is noticed by stat alone, whichever way the files were replaced."""

from __future__ import annotations

import os
from pathlib import Path

from relentad import tls
from relentad.config import Config, TLSConfig


def _config(tmp_path: Path) -> Config:
    tls.make_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", ["mx.example.test"])
    return Config(tls=TLSConfig(cert="cert.pem", key="key.pem"), path=tmp_path / "relentad.toml")


def test_watcher_sees_a_symlink_swap_an_in_place_rewrite_and_a_missing_file(tmp_path: Path) -> None:
    config = _config(tmp_path)
    watcher = tls.PairWatcher()
    watcher.mark(config)
    assert not watcher.changed(config)

    # certbot: live/cert.pem becomes a symlink to a new archive file
    tls.make_self_signed(tmp_path / "cert2.pem", tmp_path / "key2.pem", ["mx.example.test"])
    (tmp_path / "cert.pem").unlink()
    (tmp_path / "cert.pem").symlink_to(tmp_path / "cert2.pem")
    assert watcher.changed(config)
    assert not watcher.changed(config), "one change is reported once"

    # a client that rewrites in place: same inode, new size or mtime
    key = tmp_path / "key2.pem"
    os.utime(key, ns=(1, 1))
    (tmp_path / "key.pem").unlink()
    (tmp_path / "key.pem").symlink_to(key)
    watcher.mark(config)
    key.write_bytes(key.read_bytes())
    assert watcher.changed(config)

    (tmp_path / "cert2.pem").unlink()  # a dangling symlink mid-renewal: a change, and no exception
    assert tls.pair_signature(config)[0] is None
    assert watcher.changed(config)
