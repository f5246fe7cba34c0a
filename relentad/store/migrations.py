"""Named schema migrations, applied in order and recorded in ``_migrations``.

Invariants: a migration, once released, never changes; schema changes are always a new migration appended to
:data:`MIGRATIONS`. Each runs in its own transaction together with its record, so a crash leaves either the old
or the new schema. sqlite-utils is used for the bookkeeping table and is how admins inspect the database
(``sqlite-utils tables data/relentad.db --counts``).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite3.Connection], None]


def _m001_core(conn: sqlite3.Connection) -> None:
    """Domains, accounts, aliases, mailboxes, deduplicated blobs and messages."""
    execute_script(
        conn,
        """
        CREATE TABLE domains (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created REAL NOT NULL
        );
        CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            domain_id INTEGER NOT NULL REFERENCES domains(id),
            password_hash TEXT NOT NULL,
            display_name TEXT NOT NULL DEFAULT '',
            quota_bytes INTEGER NOT NULL DEFAULT 0,
            daily_send INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'terminated')),
            created REAL NOT NULL,
            terminated REAL
        );
        CREATE INDEX accounts_domain ON accounts(domain_id);
        -- address is 'local@domain', or '@domain' for a catch-all; one alias may reach several accounts.
        CREATE TABLE aliases (
            address TEXT NOT NULL,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            created REAL NOT NULL,
            PRIMARY KEY (address, account_id)
        );
        CREATE INDEX aliases_account ON aliases(account_id);
        CREATE TABLE mailboxes (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            name TEXT NOT NULL,
            special_use TEXT,
            uidvalidity INTEGER NOT NULL,
            uidnext INTEGER NOT NULL DEFAULT 1,
            highestmodseq INTEGER NOT NULL DEFAULT 1,
            subscribed INTEGER NOT NULL DEFAULT 1,
            created REAL NOT NULL,
            UNIQUE (account_id, name)
        );
        -- Raw messages exactly as received, stored once however many mailboxes hold them.
        CREATE TABLE blobs (
            id INTEGER PRIMARY KEY,
            sha256 BLOB NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            refs INTEGER NOT NULL DEFAULT 0,
            structure TEXT,
            data BLOB NOT NULL
        );
        -- One row per message in a mailbox. 'prefix' holds the trace headers added for this recipient
        -- (Return-Path, Delivered-To, Received...): the message a client sees is prefix || blob.
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
            uid INTEGER NOT NULL,
            modseq INTEGER NOT NULL,
            flags INTEGER NOT NULL DEFAULT 0,
            keywords TEXT NOT NULL DEFAULT '',
            internaldate REAL NOT NULL,
            blob_id INTEGER NOT NULL REFERENCES blobs(id),
            prefix BLOB NOT NULL DEFAULT x'',
            size INTEGER NOT NULL,
            UNIQUE (mailbox_id, uid)
        );
        CREATE INDEX messages_blob ON messages(blob_id);
        CREATE TRIGGER messages_blob_ref AFTER INSERT ON messages BEGIN
            UPDATE blobs SET refs = refs + 1 WHERE id = NEW.blob_id;
        END;
        CREATE TRIGGER messages_blob_unref AFTER DELETE ON messages BEGIN
            UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
        END;
        """,
    )


def _m003_imap(conn: sqlite3.Connection) -> None:
    """IMAP: modseq index, \\Noselect mailboxes, the expunge retention area and QRESYNC tombstones.

    ``expunged`` keeps every expunged message (its blob referenced, so refcounts stay right via triggers) until
    the retention purge; ``vanished`` remembers (mailbox, uid, modseq) of every message that left a mailbox
    (expunge or move) for QRESYNC VANISHED (RFC 7162 §3.2.10).
    """
    execute_script(
        conn,
        """
        CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
        ALTER TABLE mailboxes ADD COLUMN noselect INTEGER NOT NULL DEFAULT 0;
        -- \\Recent (RFC 3501 §2.3.2): UIDs from here on are recent for the next session that selects the mailbox
        ALTER TABLE mailboxes ADD COLUMN first_recent_uid INTEGER NOT NULL DEFAULT 1;
        -- the highest UIDVALIDITY ever given out, so a mailbox deleted and created again never reuses one
        ALTER TABLE accounts ADD COLUMN last_uidvalidity INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE expunged (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL,
            mailbox_id INTEGER NOT NULL,
            mailbox_name TEXT NOT NULL,
            uid INTEGER NOT NULL,
            blob_id INTEGER NOT NULL REFERENCES blobs(id),
            prefix BLOB NOT NULL,
            flags INTEGER NOT NULL,
            keywords TEXT NOT NULL,
            internaldate REAL NOT NULL,
            size INTEGER NOT NULL,
            expunged REAL NOT NULL
        );
        CREATE INDEX expunged_account ON expunged(account_id);
        CREATE INDEX expunged_time ON expunged(expunged);
        CREATE INDEX expunged_blob ON expunged(blob_id);
        CREATE TRIGGER expunged_blob_ref AFTER INSERT ON expunged BEGIN
            UPDATE blobs SET refs = refs + 1 WHERE id = NEW.blob_id;
        END;
        CREATE TRIGGER expunged_blob_unref AFTER DELETE ON expunged BEGIN
            UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
        END;
        CREATE TABLE vanished (
            mailbox_id INTEGER NOT NULL,
            uid INTEGER NOT NULL,
            modseq INTEGER NOT NULL,
            PRIMARY KEY (mailbox_id, uid)
        ) WITHOUT ROWID;
        CREATE INDEX vanished_modseq ON vanished(mailbox_id, modseq);
        """,
    )


def _m002_outbound(conn: sqlite3.Connection) -> None:
    """The outbound queue (one row per message, one per recipient), send counters and the login history."""
    execute_script(
        conn,
        """
        -- A submitted message waiting for (some of) its remote recipients; deleted once none is queued.
        CREATE TABLE queue_messages (
            id INTEGER PRIMARY KEY,
            account_id INTEGER REFERENCES accounts(id),  -- the sender, who gets DSNs; NULL for our own DSNs
            mail_from TEXT NOT NULL,                     -- '' is the null sender (never bounced)
            data BLOB NOT NULL,
            size INTEGER NOT NULL,
            transaction_id TEXT NOT NULL,
            created REAL NOT NULL,
            delay_notified INTEGER NOT NULL DEFAULT 0
        );
        -- Per-recipient state: a result is written in the same transaction that records it, so a restart
        -- never sends again to a recipient whose server already accepted the message.
        CREATE TABLE queue_recipients (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
            address TEXT NOT NULL,
            domain TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL,
            last_attempt REAL,
            last_reply TEXT NOT NULL DEFAULT '',
            finished REAL
        );
        CREATE INDEX queue_recipients_due ON queue_recipients(state, next_attempt);
        CREATE INDEX queue_recipients_message ON queue_recipients(message_id);
        -- Recipients of accepted submissions per account and period ('day' / 'hour', start as unix time).
        CREATE TABLE send_counts (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            period TEXT NOT NULL CHECK (period IN ('day', 'hour')),
            start INTEGER NOT NULL,
            recipients INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (account_id, period, start)
        );
        -- Every login attempt, successful or not (protocol 'smtp' or 'imap').
        CREATE TABLE login_history (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
            login TEXT NOT NULL,
            ip TEXT NOT NULL,
            protocol TEXT NOT NULL,
            result TEXT NOT NULL CHECK (result IN ('success', 'failure')),
            reason TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX login_history_account ON login_history(account_id, time);
        """,
    )


def _m004_crm(conn: sqlite3.Connection) -> None:
    """The CRM (issue 6): companies, contacts with several addresses and tags, threads, filed messages, rules.

    Everything is per account. ``crm_messages`` has one row per distinct message (blob) of an account, so it
    survives COPY/MOVE (which give the IMAP copies new rows) and a message filed into two folders counts once;
    its rows are never deleted (but with their account), so ``id`` only ever grows: a stable order, and a UID
    source for the IMAP virtual folders ``Contacts/<Name>``. Contacts with kind ``list``/``bulk`` are mailing
    lists and automatic senders; ``confirmed`` says the owner knows the contact (wrote to them, or tagged, noted
    or merged them). Indexes are only those the delivery path and the contact queries use: every index is
    written per message.
    """
    execute_script(
        conn,
        """
        CREATE TABLE crm_companies (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            domain TEXT NOT NULL,  -- organisational domain (acme.co.uk for mail.acme.co.uk)
            name TEXT NOT NULL,
            created REAL NOT NULL,
            UNIQUE (account_id, domain)
        );
        CREATE TABLE crm_contacts (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'list', 'bulk')),
            company_id INTEGER REFERENCES crm_companies(id) ON DELETE SET NULL,
            confirmed INTEGER NOT NULL DEFAULT 0,
            notes TEXT NOT NULL DEFAULT '',
            first_contact REAL,
            last_contact REAL,
            count_in INTEGER NOT NULL DEFAULT 0,
            count_out INTEGER NOT NULL DEFAULT 0,
            uidvalidity INTEGER NOT NULL DEFAULT 1,  -- bumped when a merge adds older messages (virtual folder)
            created REAL NOT NULL
        );
        -- on account_id alone: counts and last_contact change with every message, an index on them would too
        CREATE INDEX crm_contacts_account ON crm_contacts(account_id);
        CREATE INDEX crm_contacts_company ON crm_contacts(company_id);
        CREATE TABLE crm_addresses (
            account_id INTEGER NOT NULL,
            address TEXT NOT NULL,  -- normalised: lower case
            contact_id INTEGER NOT NULL REFERENCES crm_contacts(id) ON DELETE CASCADE,
            PRIMARY KEY (account_id, address)
        ) WITHOUT ROWID;
        CREATE INDEX crm_addresses_contact ON crm_addresses(contact_id);
        CREATE TABLE crm_tags (
            contact_id INTEGER NOT NULL REFERENCES crm_contacts(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (contact_id, tag)
        ) WITHOUT ROWID;
        CREATE INDEX crm_tags_tag ON crm_tags(tag, contact_id);
        CREATE TABLE crm_threads (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            subject TEXT NOT NULL DEFAULT '',      -- as the first message had it (decoded)
            subject_key TEXT NOT NULL DEFAULT '',  -- normalised, for the fallback of clients without References
            first_message REAL NOT NULL,
            last_message REAL NOT NULL,
            messages INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX crm_threads_subject ON crm_threads(account_id, subject_key);
        -- Message-IDs seen (own and referenced) → thread, per account.
        CREATE TABLE crm_thread_ids (
            account_id INTEGER NOT NULL,
            msgid TEXT NOT NULL,
            thread_id INTEGER NOT NULL REFERENCES crm_threads(id) ON DELETE CASCADE,
            PRIMARY KEY (account_id, msgid)
        ) WITHOUT ROWID;
        CREATE TABLE crm_messages (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            blob_id INTEGER NOT NULL,
            thread_id INTEGER REFERENCES crm_threads(id) ON DELETE SET NULL,
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            time REAL NOT NULL,
            sender TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '',
            UNIQUE (account_id, blob_id)
        );
        CREATE TABLE crm_message_contacts (
            contact_id INTEGER NOT NULL REFERENCES crm_contacts(id) ON DELETE CASCADE,
            message_id INTEGER NOT NULL REFERENCES crm_messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            PRIMARY KEY (contact_id, message_id)
        ) WITHOUT ROWID;
        CREATE INDEX crm_message_contacts_message ON crm_message_contacts(message_id);
        CREATE TABLE crm_thread_contacts (
            thread_id INTEGER NOT NULL REFERENCES crm_threads(id) ON DELETE CASCADE,
            contact_id INTEGER NOT NULL REFERENCES crm_contacts(id) ON DELETE CASCADE,
            PRIMARY KEY (contact_id, thread_id)
        ) WITHOUT ROWID;
        -- Filing rules: one Sieve script each, evaluated in position order at delivery.
        CREATE TABLE crm_rules (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            script TEXT NOT NULL,
            created REAL NOT NULL,
            UNIQUE (account_id, name)
        );
        CREATE INDEX crm_rules_account ON crm_rules(account_id, position);
        """,
    )


def _m005_spam_tokens(conn: sqlite3.Connection) -> None:
    """The spam filter (issue 5): token counts per scope, message totals, and what was trained as what.

    ``scope`` is an account id, or 0 for the global model every account falls back on (no foreign key, so 0 can
    exist). ``spam_trained`` records, per scope and message (SHA-256 of the raw message as trained), its class, how
    many times it was learned and the exact tokens learned (zlib), so retraining is idempotent and unlearning is
    exact. ``seen`` is a day number (unix days) of the last training or scoring use, for pruning.
    """
    execute_script(
        conn,
        """
        CREATE TABLE spam_tokens (
            scope INTEGER NOT NULL,
            token TEXT NOT NULL,
            spam INTEGER NOT NULL DEFAULT 0,
            ham INTEGER NOT NULL DEFAULT 0,
            seen INTEGER NOT NULL,
            PRIMARY KEY (scope, token)
        ) WITHOUT ROWID;
        CREATE INDEX spam_tokens_seen ON spam_tokens(scope, seen);
        CREATE TABLE spam_totals (
            scope INTEGER PRIMARY KEY,
            nspam INTEGER NOT NULL DEFAULT 0,
            nham INTEGER NOT NULL DEFAULT 0,
            tokens INTEGER NOT NULL DEFAULT 0,  -- rows in spam_tokens for this scope, kept in step
            updated REAL NOT NULL
        );
        CREATE TABLE spam_trained (
            scope INTEGER NOT NULL,
            sha256 BLOB NOT NULL,
            class TEXT NOT NULL CHECK (class IN ('spam', 'ham')),
            times INTEGER NOT NULL,
            tokens BLOB NOT NULL,
            source TEXT NOT NULL DEFAULT '',  -- 'cli', 'imap-move', 'imap-copy', 'imap-flag'
            trained REAL NOT NULL,
            PRIMARY KEY (scope, sha256)
        );
        """,
    )


def _m006_lifecycle_quota(conn: sqlite3.Connection) -> None:
    """Quotas (issue 7): a per-account hourly send limit next to ``daily_send`` (0 = unlimited); when the account
    was last warned that it passed 90 % of its disk quota (0 = not warned since it was last below); and the
    account's usage (octets and messages in its mailboxes), kept by triggers in the same transaction as every
    message row written, so it is exact under concurrency (``relentad quota show --recount`` checks it)."""
    execute_script(
        conn,
        """
        ALTER TABLE accounts ADD COLUMN hourly_send INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE accounts ADD COLUMN quota_warned REAL NOT NULL DEFAULT 0;
        ALTER TABLE accounts ADD COLUMN used_bytes INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE accounts ADD COLUMN used_messages INTEGER NOT NULL DEFAULT 0;
        UPDATE accounts SET
            used_bytes = (SELECT coalesce(sum(m.size), 0) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
                          WHERE b.account_id = accounts.id),
            used_messages = (SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
                             WHERE b.account_id = accounts.id);
        CREATE TRIGGER messages_usage_add AFTER INSERT ON messages BEGIN
            UPDATE accounts SET used_bytes = used_bytes + NEW.size, used_messages = used_messages + 1
            WHERE id = (SELECT account_id FROM mailboxes WHERE id = NEW.mailbox_id);
        END;
        CREATE TRIGGER messages_usage_remove AFTER DELETE ON messages BEGIN
            UPDATE accounts SET used_bytes = used_bytes - OLD.size, used_messages = used_messages - 1
            WHERE id = (SELECT account_id FROM mailboxes WHERE id = OLD.mailbox_id);
        END;
        CREATE TRIGGER messages_usage_change AFTER UPDATE OF size, mailbox_id ON messages BEGIN
            UPDATE accounts SET used_bytes = used_bytes - OLD.size, used_messages = used_messages - 1
            WHERE id = (SELECT account_id FROM mailboxes WHERE id = OLD.mailbox_id);
            UPDATE accounts SET used_bytes = used_bytes + NEW.size, used_messages = used_messages + 1
            WHERE id = (SELECT account_id FROM mailboxes WHERE id = NEW.mailbox_id);
        END;
        """,
    )


def _m007_crm_folders(conn: sqlite3.Connection) -> None:
    """The CRM's IMAP virtual folders (issue 6): a UIDVALIDITY per company (bumped when its view gains older
    messages, like a contact's) and the subscription state of ``Contacts/<Name>`` and ``Companies/<Name>``."""
    execute_script(
        conn,
        """
        ALTER TABLE crm_companies ADD COLUMN uidvalidity INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE crm_companies ADD COLUMN subscribed INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE crm_contacts ADD COLUMN subscribed INTEGER NOT NULL DEFAULT 1;
        """,
    )


def _m008_quota_messages_activity(conn: sqlite3.Connection) -> None:
    """Quotas and activity (issue 7): a per-account limit on the number of stored messages (RFC 9208 MESSAGE,
    0 = unlimited); monthly activity summaries that old per-day rows (logins, send counters, received mail) are
    rolled up into before they are deleted, so history totals survive; and, per account, the time before which
    everything is counted only in those summaries (``activity_rolled``)."""
    execute_script(
        conn,
        """
        ALTER TABLE accounts ADD COLUMN quota_messages INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE accounts ADD COLUMN activity_rolled REAL NOT NULL DEFAULT 0;
        CREATE TABLE activity_months (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            month TEXT NOT NULL,  -- YYYY-MM (UTC)
            received INTEGER NOT NULL DEFAULT 0,
            bytes_stored INTEGER NOT NULL DEFAULT 0,
            sent INTEGER NOT NULL DEFAULT 0,  -- recipients
            logins INTEGER NOT NULL DEFAULT 0,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (account_id, month)
        ) WITHOUT ROWID;
        """,
    )


def _m009_imap_savedate(conn: sqlite3.Connection) -> None:
    """IMAP SAVEDATE (RFC 8514): when each message was saved into its mailbox (delivery, APPEND, COPY, MOVE).
    Messages stored before this migration get their internal date, the best estimate there is."""
    conn.execute("ALTER TABLE messages ADD COLUMN saved REAL")
    conn.execute("UPDATE messages SET saved = internaldate")


def _m010_crm_thread_links(conn: sqlite3.Connection) -> None:
    """A contact linked to a message is linked to the message's thread, kept by a trigger: one statement less for
    the sorter on every delivery (the delivery path's cost, issue 6), and no way for the two links to disagree."""
    execute_script(
        conn,
        """
        CREATE TRIGGER crm_message_contacts_thread AFTER INSERT ON crm_message_contacts BEGIN
            INSERT OR IGNORE INTO crm_thread_contacts (thread_id, contact_id)
            SELECT thread_id, NEW.contact_id FROM crm_messages WHERE id = NEW.message_id AND thread_id IS NOT NULL;
        END;
        INSERT OR IGNORE INTO crm_thread_contacts (thread_id, contact_id)
            SELECT m.thread_id, l.contact_id FROM crm_message_contacts l JOIN crm_messages m ON m.id = l.message_id
            WHERE m.thread_id IS NOT NULL;
        """,
    )


def _m012_blob_id_floor(conn: sqlite3.Connection) -> None:
    """Blob ids are never reused. The CRM keeps its history (``crm_messages``) after a blob is purged, and SQLite
    gives a new row the highest id + 1, so purging the newest blob let the next message take its id — and show up
    in an old contact's views. The purge records the highest id it has seen here; new blobs are numbered above it."""
    execute_script(
        conn,
        """
        CREATE TABLE blob_id_floor (floor INTEGER NOT NULL);
        INSERT INTO blob_id_floor (floor) SELECT coalesce(max(id), 0) FROM blobs;
        """,
    )


def _m013_spam_tokenizer(conn: sqlite3.Connection) -> None:
    """Which tokenizer version a spam model was trained with (``relentad.spam.tokenize.TOKENIZER_VERSION``): when
    the tokenizer changes, counts learned before are partly stale and ``spam stats`` advises retraining. Models
    trained before this migration were trained with version 1."""
    conn.execute("ALTER TABLE spam_totals ADD COLUMN tokenizer INTEGER NOT NULL DEFAULT 1")


def _m014_spam_views(conn: sqlite3.Connection) -> None:
    """The header and body view models (``relentad.spam.views``) beside the full one: their message totals per
    scope, and how many times each trained message was learned into each. Their token rows live in
    ``spam_tokens`` under marked token strings, so the token table itself is unchanged."""
    for column in ("head_spam", "head_ham", "body_spam", "body_ham"):
        conn.execute(f"ALTER TABLE spam_totals ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    for column in ("head_times", "body_times"):
        conn.execute(f"ALTER TABLE spam_trained ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


def _m015_spam_senders(conn: sqlite3.Connection) -> None:
    """Per-account sender lists (``relentad.spam.senderlists``): a full address or ``@domain`` whose mail is always
    filed into Junk (block) or never on its score alone (allow)."""
    execute_script(
        conn,
        """
        CREATE TABLE spam_senders (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            pattern TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('allow', 'block')),
            created REAL NOT NULL,
            PRIMARY KEY (account_id, pattern)
        ) WITHOUT ROWID;
        """,
    )


def _m016_spam_rebuilt(conn: sqlite3.Connection) -> None:
    """When a scope's model was last rebuilt from its recorded lessons (``relentad.spam.rebuild``; 0: never), so
    that the daily rebuild only visits accounts that learned something since."""
    conn.execute("ALTER TABLE spam_totals ADD COLUMN rebuilt REAL NOT NULL DEFAULT 0")


def _m017_imap_subscriptions(conn: sqlite3.Connection) -> None:
    """IMAP subscriptions as a list of names per account, apart from the mailboxes: DELETE of a mailbox must not
    remove its name from the list (RFC 3501 §6.3.6, RFC 9051 §6.3.7), and LIST (SUBSCRIBED) shows a subscribed name
    that no longer exists as \\NonExistent (RFC 5258 §3.1). The flag on each mailbox row went with the row."""
    execute_script(
        conn,
        """
        CREATE TABLE subscriptions (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            PRIMARY KEY (account_id, name)
        ) WITHOUT ROWID;
        INSERT INTO subscriptions (account_id, name) SELECT account_id, name FROM mailboxes WHERE subscribed = 1;
        ALTER TABLE mailboxes DROP COLUMN subscribed;
        """,
    )


def _m018_imap_internaldate_zone(conn: sqlite3.Connection) -> None:
    """The time zone of each message's internal date, in minutes east of UTC: APPEND's date-time carries one, and
    FETCH INTERNALDATE must give it back and SEARCH BEFORE/ON/SINCE compare on the date in that zone (RFC 3501
    §2.3.3, §6.4.4). The retained copy keeps it too. Delivered mail and messages stored before this migration: UTC
    (0), which is how they were shown."""
    for table in ("messages", "expunged"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN zone INTEGER NOT NULL DEFAULT 0")


def _m019_queue_dsn(conn: sqlite3.Connection) -> None:
    """The DSN parameters (RFC 3461) a queued message was sent with, to pass on to the next hop and to decide which
    reports the sender gets: MAIL's RET ('FULL' | 'HDRS') and decoded ENVID per message, RCPT's NOTIFY ('NEVER' or
    a comma list of SUCCESS, FAILURE, DELAY) and ORCPT ('type;decoded address') per recipient. NULL: not given."""
    execute_script(
        conn,
        """
        ALTER TABLE queue_messages ADD COLUMN dsn_ret TEXT;
        ALTER TABLE queue_messages ADD COLUMN dsn_envid TEXT;
        ALTER TABLE queue_recipients ADD COLUMN dsn_notify TEXT;
        ALTER TABLE queue_recipients ADD COLUMN dsn_orcpt TEXT;
        """,
    )


def _m020_mta_sts_policies(conn: sqlite3.Connection) -> None:
    """The outbound queue's MTA-STS policy cache (RFC 8461 §5.1): per recipient domain, the policy text as fetched,
    its fields (``mx``: the patterns, space-separated), the TXT ``id`` it was fetched under, and when it was
    fetched and expires (fetched + max_age)."""
    execute_script(
        conn,
        """
        CREATE TABLE mta_sts_policies (
            domain TEXT PRIMARY KEY,
            policy_id TEXT NOT NULL,
            policy TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
            mx TEXT NOT NULL,
            max_age INTEGER NOT NULL,
            fetched REAL NOT NULL,
            expires REAL NOT NULL
        ) WITHOUT ROWID;
        """,
    )


def _m021_sieve_user_scripts(conn: sqlite3.Connection) -> None:
    """Each account's own Sieve scripts, managed over ManageSieve (RFC 5804): any number stored, at most one
    active (the partial unique index), run at delivery after the admin's crm_rules. Names compare exactly."""
    execute_script(
        conn,
        """
        CREATE TABLE sieve_scripts (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            script TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
            created REAL NOT NULL,
            updated REAL NOT NULL,
            UNIQUE (account_id, name)
        );
        CREATE UNIQUE INDEX sieve_scripts_active ON sieve_scripts(account_id) WHERE active = 1;
        """,
    )


def _m022_sieve_vacation(conn: sqlite3.Connection) -> None:
    """Vacation response tracking (RFC 5230 §4.2): when each sender last got each of an account's replies
    (``handle``: the rule's :handle or a hash of the reply) and when that reply's period ends; the index counts an
    account's replies of the last hour (its cap) and the purge drops rows by ``expires``."""
    execute_script(
        conn,
        """
        CREATE TABLE sieve_vacation (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            sender TEXT NOT NULL,
            handle TEXT NOT NULL,
            sent REAL NOT NULL,
            expires REAL NOT NULL,
            PRIMARY KEY (account_id, sender, handle)
        ) WITHOUT ROWID;
        CREATE INDEX sieve_vacation_sent ON sieve_vacation(account_id, sent);
        CREATE INDEX sieve_vacation_expires ON sieve_vacation(expires);
        """,
    )


def _m023_reports(conn: sqlite3.Connection) -> None:
    """Aggregate reports received about hosted domains (relentad/authreports): one ``reports`` row per DMARC
    (RFC 7489 §7.2) or TLS-RPT (RFC 8460) report, deduplicated by (kind, org, report_id) among those read; one that
    could not be read keeps its ``error`` and no rows below. ``dmarc_records`` holds a DMARC report's rows (the
    policy-evaluated results as columns, the raw auth_results as JSON), ``tls_policies`` a TLS report's policies
    with their session counts and failure details (JSON). ``dmarc_evaluations`` keeps, while ``[dmarc] send_reports``
    is on, each inbound DMARC evaluation for a domain asking for reports (rua=) until the daily report took it."""
    execute_script(
        conn,
        """
        CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('dmarc', 'tls')),
            org TEXT NOT NULL,
            report_id TEXT NOT NULL,
            domain TEXT NOT NULL,
            begin REAL NOT NULL,
            end REAL NOT NULL,
            received REAL NOT NULL,
            contact TEXT NOT NULL DEFAULT '',
            policy TEXT NOT NULL DEFAULT '{}',
            message_id TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL DEFAULT ''
        );
        CREATE UNIQUE INDEX reports_identity ON reports(kind, org, report_id) WHERE error = '';
        CREATE INDEX reports_period ON reports(kind, end);
        CREATE TABLE dmarc_records (
            report_id INTEGER NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
            source_ip TEXT NOT NULL,
            count INTEGER NOT NULL,
            disposition TEXT NOT NULL,
            dkim TEXT NOT NULL,
            spf TEXT NOT NULL,
            header_from TEXT NOT NULL,
            envelope_from TEXT NOT NULL,
            reasons TEXT NOT NULL DEFAULT '',
            auth_results TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX dmarc_records_report ON dmarc_records(report_id);
        CREATE TABLE tls_policies (
            report_id INTEGER NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
            policy_type TEXT NOT NULL,
            domain TEXT NOT NULL,
            successes INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            mx_hosts TEXT NOT NULL DEFAULT '[]',
            strings TEXT NOT NULL DEFAULT '[]',
            details TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX tls_policies_report ON tls_policies(report_id);
        CREATE TABLE dmarc_evaluations (
            id INTEGER PRIMARY KEY,
            received REAL NOT NULL,
            policy_domain TEXT NOT NULL,
            header_from TEXT NOT NULL,
            source_ip TEXT NOT NULL,
            envelope_from TEXT NOT NULL,
            disposition TEXT NOT NULL,
            dkim TEXT NOT NULL,
            spf TEXT NOT NULL,
            auth_results TEXT NOT NULL,
            policy TEXT NOT NULL
        );
        CREATE INDEX dmarc_evaluations_domain ON dmarc_evaluations(policy_domain, id);
        """,
    )


# The address book's members (relentad.carddav): confirmed contacts that are no automatic senders, as the IMAP
# Contacts/ folders. Each trigger below bumps the account's change counter and stamps the changed card with it.
_IN_BOOK = "{c}.confirmed = 1 AND {c}.kind != 'bulk'"
_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def _bump(account: str, where: str) -> str:
    """Trigger statements: one more change for ``account``; the cards ``where`` selects carry it."""
    return f"""
        INSERT INTO carddav_sync (account_id, counter) VALUES ({account}, 1)
            ON CONFLICT (account_id) DO UPDATE SET counter = counter + 1;
        UPDATE crm_contacts SET card_rev = (SELECT counter FROM carddav_sync WHERE account_id = {account}),
                                card_changed = {_NOW}
            WHERE {where};"""


def _m024_carddav_sync(conn: sqlite3.Connection) -> None:
    """CardDAV sync (RFC 6578): a per-account change counter (``carddav_sync``; the sync token and CTag are its
    value), the counter value and time of each card's last change (``crm_contacts.card_rev``, ``card_changed``) and
    tombstones of cards deleted (``carddav_removed``: merged away, or gone with their data).

    Triggers keep them, so every writer of the CRM (delivery, the CLI's edits, merges, company renames, retention)
    is covered without knowing about CardDAV. Only what a card shows counts (name, kind, notes, company and its
    name, addresses, tags, membership) and only for cards in the address book or leaving it: delivery's counts and
    times never fire one, so the hot path pays a WHEN test at most. A card leaving the book (kind becomes bulk) keeps
    its row and is reported removed by its newer ``card_rev``; a deleted one that is or ever was in the book leaves a
    tombstone."""
    contact = _IN_BOOK.format(c="c")
    execute_script(
        conn,
        f"""
        ALTER TABLE crm_contacts ADD COLUMN card_rev INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE crm_contacts ADD COLUMN card_changed REAL;
        CREATE INDEX crm_contacts_card_rev ON crm_contacts(account_id, card_rev);
        -- no foreign keys: the triggers of an account's contacts, deleted with it, write here; the account's
        -- own trigger clears both after
        CREATE TABLE carddav_sync (
            account_id INTEGER PRIMARY KEY,
            counter INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE carddav_removed (
            account_id INTEGER NOT NULL,
            contact_id INTEGER NOT NULL,
            rev INTEGER NOT NULL,
            PRIMARY KEY (account_id, contact_id)
        ) WITHOUT ROWID;
        CREATE TRIGGER carddav_contact_added AFTER INSERT ON crm_contacts
            WHEN {_IN_BOOK.format(c="new")}
        BEGIN {_bump("new.account_id", "id = new.id")}
        END;
        CREATE TRIGGER carddav_contact_changed AFTER UPDATE OF name, kind, confirmed, notes, company_id ON crm_contacts
            WHEN ({_IN_BOOK.format(c="old")} OR {_IN_BOOK.format(c="new")})
                 AND (old.name IS NOT new.name OR old.kind IS NOT new.kind OR old.confirmed IS NOT new.confirmed
                      OR old.notes IS NOT new.notes OR old.company_id IS NOT new.company_id)
        BEGIN {_bump("new.account_id", "id = new.id")}
        END;
        -- card_rev > 0: it was in the book once (a card that left it, deleted before a client synced again)
        CREATE TRIGGER carddav_contact_deleted AFTER DELETE ON crm_contacts
            WHEN {_IN_BOOK.format(c="old")} OR old.card_rev > 0
        BEGIN
            INSERT INTO carddav_sync (account_id, counter) VALUES (old.account_id, 1)
                ON CONFLICT (account_id) DO UPDATE SET counter = counter + 1;
            INSERT OR REPLACE INTO carddav_removed (account_id, contact_id, rev)
                VALUES (old.account_id, old.id, (SELECT counter FROM carddav_sync WHERE account_id = old.account_id));
        END;
        CREATE TRIGGER carddav_account_deleted AFTER DELETE ON accounts
        BEGIN
            DELETE FROM carddav_sync WHERE account_id = old.id;
            DELETE FROM carddav_removed WHERE account_id = old.id;
        END;
        CREATE TRIGGER carddav_company_renamed AFTER UPDATE OF name ON crm_companies
            WHEN old.name IS NOT new.name
                 AND EXISTS (SELECT 1 FROM crm_contacts c WHERE c.company_id = new.id AND {contact})
        BEGIN {_bump("new.account_id", f"company_id = new.id AND {_IN_BOOK.format(c='crm_contacts')}")}
        END;
        """,
    )
    for table, account in (("crm_addresses", "{r}.account_id"), ("crm_tags", None)):
        for event, row in (("INSERT", "new"), ("DELETE", "old"), ("UPDATE OF contact_id", "new")):
            owner = (
                account.format(r=row)
                if account
                else f"(SELECT account_id FROM crm_contacts WHERE id = {row}.contact_id)"
            )
            name = f"carddav_{table.removeprefix('crm_')}_{event.split()[0].lower()}"
            execute_script(
                conn,
                f"""
                CREATE TRIGGER {name} AFTER {event} ON {table}
                    WHEN EXISTS (SELECT 1 FROM crm_contacts c WHERE c.id = {row}.contact_id AND {contact})
                BEGIN {_bump(owner, f"id = {row}.contact_id")}
                END;
                """,
            )


def _m033_carddav_write(conn: sqlite3.Connection) -> None:
    """A writable address book (``relentad.carddav.write``): per contact, the resource name a client created it
    under (kept for good: its href) and the client's last vCard (NULL once deleted from the book) with ``base``, the
    CRM's values right after that PUT (JSON), which the merge compares with. A stored card's change is a change of
    the book, counted like the CRM's (``_bump``). No foreign key: a deleted contact's row keeps its name for the
    tombstone (sync-collection reports that href removed); the account's deletion clears them."""
    contact = _IN_BOOK.format(c="c")
    execute_script(
        conn,
        f"""
        CREATE TABLE carddav_cards (
            contact_id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            uid TEXT NOT NULL DEFAULT '',
            vcard TEXT,
            base TEXT,
            UNIQUE (account_id, name)
        );
        CREATE INDEX carddav_cards_uid ON carddav_cards(account_id, uid);
        CREATE TRIGGER carddav_card_put AFTER INSERT ON carddav_cards
            WHEN new.vcard IS NOT NULL
                 AND EXISTS (SELECT 1 FROM crm_contacts c WHERE c.id = new.contact_id AND {contact})
        BEGIN {_bump("new.account_id", "id = new.contact_id")}
        END;
        CREATE TRIGGER carddav_card_replaced AFTER UPDATE OF vcard ON carddav_cards
            WHEN new.vcard IS NOT old.vcard
                 AND EXISTS (SELECT 1 FROM crm_contacts c WHERE c.id = new.contact_id AND {contact})
        BEGIN {_bump("new.account_id", "id = new.contact_id")}
        END;
        CREATE TRIGGER carddav_cards_account_deleted AFTER DELETE ON accounts
        BEGIN
            DELETE FROM carddav_cards WHERE account_id = old.id;
        END;
        """,
    )


def _m025_crm_thread_ids(conn: sqlite3.Connection) -> None:
    """CRM thread and contact ids are never reused: they are IMAP THREADIDs and part of MAILBOXIDs (RFC 8474), and
    web links. SQLite gives a new row the highest id + 1, so a merge deleting the newest thread or contact let the
    next new one take its id, and a client's cached id pointed at another conversation or folder. The last id each
    table handed out is kept here; new rows are numbered above it (``crm.ids.fresh``)."""
    execute_script(
        conn,
        """
        CREATE TABLE crm_id_floors (name TEXT PRIMARY KEY, floor INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO crm_id_floors (name, floor) SELECT 'crm_threads', coalesce(max(id), 0) FROM crm_threads;
        INSERT INTO crm_id_floors (name, floor) SELECT 'crm_contacts', coalesce(max(id), 0) FROM crm_contacts;
        """,
    )


def _m026_imap_acl(conn: sqlite3.Connection) -> None:
    """Shared mailboxes (RFC 4314): rights an owner granted another account of the server on one of its mailboxes.
    The owner is the mailbox's account; a grant goes with the mailbox id (RENAME keeps it, DELETE drops it)."""
    execute_script(
        conn,
        """
        CREATE TABLE imap_acl (
            mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
            grantee_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            rights TEXT NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (mailbox_id, grantee_id)
        ) WITHOUT ROWID;
        CREATE INDEX imap_acl_grantee ON imap_acl (grantee_id);
        """,
    )


def _m027_crm_followups(conn: sqlite3.Connection) -> None:
    """Follow-ups ("awaiting reply", :mod:`relentad.crm.followups`): a thread whose newest counting message is one
    the account sent to a person keeps that message and its time (``awaiting_message``, ``awaiting``), set and
    cleared by the sorter as it files mail; a partial index finds an account's waiting threads at query time,
    when the delay decides which are due (time passes without a write). Per account: the delay override and the
    ``Follow-up`` IMAP folder's UIDVALIDITY and subscription. Threads filed before this migration are judged by
    their newest message, whatever it is."""
    execute_script(
        conn,
        """
        ALTER TABLE crm_threads ADD COLUMN awaiting_message INTEGER;
        ALTER TABLE crm_threads ADD COLUMN awaiting REAL;
        CREATE INDEX crm_threads_awaiting ON crm_threads(account_id, awaiting, awaiting_message)
            WHERE awaiting IS NOT NULL;
        CREATE TABLE crm_followup_settings (
            account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            days INTEGER,  -- NULL: [crm] followup_days
            uidvalidity INTEGER NOT NULL DEFAULT 1,
            subscribed INTEGER NOT NULL DEFAULT 1
        );
        WITH newest AS (
            SELECT id, thread_id, time, direction,
                   row_number() OVER (PARTITION BY thread_id ORDER BY time DESC, id DESC) AS n
            FROM crm_messages WHERE thread_id IS NOT NULL)
        UPDATE crm_threads SET awaiting_message = newest.id, awaiting = newest.time
        FROM newest
        WHERE newest.thread_id = crm_threads.id AND newest.n = 1 AND newest.direction = 'out'
          AND EXISTS (SELECT 1 FROM crm_message_contacts l JOIN crm_contacts c ON c.id = l.contact_id
                      WHERE l.message_id = newest.id AND c.kind = 'person' AND l.role IN ('to', 'cc', 'bcc'));
        """,
    )


def _m028_tlsrpt_results(conn: sqlite3.Connection) -> None:
    """SMTP TLS reporting (RFC 8460) about our outbound deliveries: while ``[tlsrpt] send_reports`` is on, one
    ``tlsrpt_results`` row per TLS session tried with a recipient domain's MX host (MX mode), or per failed MTA-STS
    policy discovery, until the daily report took it. ``result`` is ``success`` or an RFC 8460 §4.3 result type;
    ``policy``/``mx`` the MTA-STS policy text and mx patterns that applied (empty with ``no-policy-found``)."""
    execute_script(
        conn,
        """
        CREATE TABLE tlsrpt_results (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            domain TEXT NOT NULL,
            policy_type TEXT NOT NULL CHECK (policy_type IN ('sts', 'no-policy-found')),
            policy TEXT NOT NULL DEFAULT '',
            mx TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL,
            sending_ip TEXT NOT NULL DEFAULT '',
            mx_host TEXT NOT NULL DEFAULT '',
            mx_ip TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX tlsrpt_results_domain ON tlsrpt_results(domain, id);
        """,
    )


def _m030_forwarding(conn: sqlite3.Connection) -> None:
    """Forwarding (relentad/forwarding.py): alias targets outside this server, and the SRS secrets (srs.py) — 32
    random octets made here, kept with the data (a backup restores them, so bounces to forwarded mail in flight
    still verify); the newest signs, every one verifies."""
    execute_script(
        conn,
        """
        CREATE TABLE alias_forwards (
            address TEXT NOT NULL,
            target TEXT NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (address, target)
        ) WITHOUT ROWID;
        CREATE TABLE srs_secrets (
            id INTEGER PRIMARY KEY,
            secret BLOB NOT NULL,
            created REAL NOT NULL
        );
        """,
    )
    conn.execute("INSERT INTO srs_secrets (secret, created) VALUES (?, ?)", (secrets.token_bytes(32), time.time()))


def _m031_app_passwords(conn: sqlite3.Connection) -> None:
    """App passwords (:mod:`relentad.auth.apppasswords`): one per mail client, argon2id-hashed with a 16-bit
    lookup tag, a scope and the last use; revoking deletes the row, and ids are never reused (AUTOINCREMENT: a
    session remembers the id it logged in with, which must not come to name a newer password).
    ``accounts.app_passwords_only`` refuses the account's password on the mail protocols;
    ``login_history.app_password`` names the one a login used."""
    execute_script(
        conn,
        """
        CREATE TABLE app_passwords (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            tag INTEGER NOT NULL,
            scope TEXT NOT NULL,
            created REAL NOT NULL,
            last_used REAL,
            last_protocol TEXT NOT NULL DEFAULT '',
            last_ip TEXT NOT NULL DEFAULT '',
            UNIQUE (account_id, name)
        );
        CREATE INDEX app_passwords_tag ON app_passwords(account_id, tag);
        ALTER TABLE accounts ADD COLUMN app_passwords_only INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE login_history ADD COLUMN app_password TEXT NOT NULL DEFAULT '';
        """,
    )


def _m032_dane(conn: sqlite3.Connection) -> None:
    """DANE on outbound delivery: a TLS session under an MX host's TLSA records is policy type ``tlsa`` (RFC 8460
    §4.3), its ``policy`` the records and ``mx`` the host. SQLite cannot change a CHECK, so the table is rebuilt
    with its rows."""
    execute_script(
        conn,
        """
        CREATE TABLE tlsrpt_results_new (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            domain TEXT NOT NULL,
            policy_type TEXT NOT NULL CHECK (policy_type IN ('sts', 'tlsa', 'no-policy-found')),
            policy TEXT NOT NULL DEFAULT '',
            mx TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL,
            sending_ip TEXT NOT NULL DEFAULT '',
            mx_host TEXT NOT NULL DEFAULT '',
            mx_ip TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT ''
        );
        INSERT INTO tlsrpt_results_new SELECT id, at, domain, policy_type, policy, mx, result, sending_ip, mx_host,
            mx_ip, detail FROM tlsrpt_results;
        DROP TABLE tlsrpt_results;
        ALTER TABLE tlsrpt_results_new RENAME TO tlsrpt_results;
        CREATE INDEX tlsrpt_results_domain ON tlsrpt_results(domain, id);
        """,
    )


def execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run several statements inside the caller's transaction (``executescript`` would COMMIT first)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        conn.execute(statement)


def _m034_totp(conn: sqlite3.Connection) -> None:
    """Two-factor login for the account pages (:mod:`relentad.auth.totp`): one TOTP secret per account with the
    last time step accepted (a code is refused a second time), the recovery codes' hashes, and the cookie
    sessions a login through the form opens (:mod:`relentad.accountpage.sessions`: only the token's hash)."""
    execute_script(
        conn,
        """
        CREATE TABLE totp (
            account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            secret BLOB NOT NULL,
            last_step INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL
        );
        CREATE TABLE totp_recovery (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            code_hash TEXT NOT NULL,
            PRIMARY KEY (account_id, code_hash)
        );
        CREATE TABLE web_sessions (
            id_hash TEXT PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            created REAL NOT NULL,
            last_seen REAL NOT NULL,
            ip TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX web_sessions_account ON web_sessions(account_id);
        """,
    )


def _m035_search_index(conn: sqlite3.Connection) -> None:
    """SEARCH's full-text prefilter (:mod:`relentad.imap.searchindex`): trigram indexes of each blob's header
    fields and body text, contentless and without positions (small), and how far the background job has got
    (``watermark``: every blob up to that id is indexed by the code named ``version``; above it SEARCH scans)."""
    execute_script(
        conn,
        """
        CREATE VIRTUAL TABLE search_head USING fts5(
            t, content='', detail='none', columnsize=0, tokenize='trigram'
        );
        CREATE VIRTUAL TABLE search_body USING fts5(
            t, content='', detail='none', columnsize=0, tokenize='trigram'
        );
        CREATE TABLE search_index_state (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            watermark INTEGER NOT NULL,
            version TEXT NOT NULL
        );
        INSERT INTO search_index_state (id, watermark, version) VALUES (0, 0, '');
        """,
    )


def _m036_greylist(conn: sqlite3.Connection) -> None:
    """Greylisting (relentad/greylist.py): triplets and client networks, each row with when it stops mattering."""
    execute_script(
        conn,
        """
        CREATE TABLE greylist (
            client TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            first_seen REAL NOT NULL,
            passed REAL,
            last_seen REAL NOT NULL,
            expires REAL NOT NULL,
            PRIMARY KEY (client, sender, recipient)
        ) WITHOUT ROWID;
        CREATE INDEX greylist_expires ON greylist(expires);
        CREATE TABLE greylist_clients (
            client TEXT PRIMARY KEY,
            passes INTEGER NOT NULL,
            last_seen REAL NOT NULL,
            expires REAL NOT NULL
        ) WITHOUT ROWID;
        """,
    )


def _m037_autoreply(conn: sqlite3.Connection) -> None:
    """The automatic reply of the account page and ``relentad autoreply`` (relentad/crm/autoreply.py): its settings
    and the Sieve script made from them, which delivery runs."""
    execute_script(
        conn,
        """
        CREATE TABLE autoreply (
            account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            enabled INTEGER NOT NULL,
            message TEXT NOT NULL,
            subject TEXT NOT NULL,
            first_day TEXT NOT NULL,
            last_day TEXT NOT NULL,
            days INTEGER NOT NULL,
            script TEXT NOT NULL,
            updated REAL NOT NULL
        );
        """,
    )


def _m038_autoforward(conn: sqlite3.Connection) -> None:
    """The forwarding a user sets on the account page (relentad/crm/autoforward.py), with its Sieve script."""
    execute_script(
        conn,
        """
        CREATE TABLE autoforward (
            account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            enabled INTEGER NOT NULL,
            address TEXT NOT NULL,
            keep INTEGER NOT NULL,
            script TEXT NOT NULL,
            updated REAL NOT NULL
        );
        """,
    )


def _m039_page_filters(conn: sqlite3.Connection) -> None:
    """The filters users set on the account page (relentad/crm/pagefilters.py), each with its Sieve script."""
    execute_script(
        conn,
        """
        CREATE TABLE page_filters (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            field TEXT NOT NULL,
            value TEXT NOT NULL,
            folder TEXT NOT NULL,
            seen INTEGER NOT NULL,
            script TEXT NOT NULL,
            created REAL NOT NULL
        );
        CREATE INDEX page_filters_account ON page_filters(account_id, id);
        """,
    )


def _m040_junk_digests(conn: sqlite3.Connection) -> None:
    """When each account's last Junk digest went (relentad/spam/digest.py): the next lists what came after."""
    conn.execute(
        """CREATE TABLE junk_digests (
               account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
               last REAL NOT NULL
           )"""
    )


def _m041_imap_imports(conn: sqlite3.Connection) -> None:
    """How far each import over IMAP got (relentad/lifecycle/imapimport.py), per account, old server and folder:
    the next run copies only UIDs above ``last_uid``, while the folder's UIDVALIDITY is the same."""
    conn.execute(
        """CREATE TABLE imap_imports (
               account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
               source TEXT NOT NULL,
               folder TEXT NOT NULL,
               uidvalidity INTEGER NOT NULL,
               last_uid INTEGER NOT NULL,
               updated REAL NOT NULL,
               PRIMARY KEY (account_id, source, folder)
           )"""
    )


def _m042_imap_import_jobs(conn: sqlite3.Connection) -> None:
    """The last import over IMAP each account started on the account page (relentad/lifecycle/importjobs.py):
    its state and counts, kept up to date by the process doing it. Never the password."""
    conn.execute(
        """CREATE TABLE imap_import_jobs (
               account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
               source TEXT NOT NULL,
               state TEXT NOT NULL,
               total INTEGER NOT NULL DEFAULT 0,
               done INTEGER NOT NULL DEFAULT 0,
               imported INTEGER NOT NULL DEFAULT 0,
               already INTEGER NOT NULL DEFAULT 0,
               error TEXT NOT NULL DEFAULT '',
               queued REAL NOT NULL,
               finished REAL
           )"""
    )


def _m043_domain_footers(conn: sqlite3.Connection) -> None:
    """Each hosted domain's footer (disclaimer), added to what its users send (relentad/footer.py)."""
    conn.execute(
        """CREATE TABLE domain_footers (
               domain_id INTEGER PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
               text TEXT NOT NULL,
               html TEXT NOT NULL,
               updated REAL NOT NULL
           )"""
    )


def _m044_archive(conn: sqlite3.Connection) -> None:
    """The archive ([retention] archive, relentad/lifecycle/archive.py): every message received and sent, its blob
    referenced like a copy's, in a hash chain whose purged front leaves its last value in ``archive_anchor``."""
    execute_script(
        conn,
        """
        CREATE TABLE archive (
            id INTEGER PRIMARY KEY,
            account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
            account TEXT NOT NULL,
            direction TEXT NOT NULL,
            archived REAL NOT NULL,
            blob_id INTEGER NOT NULL REFERENCES blobs(id),
            prefix BLOB NOT NULL DEFAULT x'',
            sha256 BLOB NOT NULL,
            mail_from TEXT NOT NULL,
            recipients TEXT NOT NULL,
            subject TEXT NOT NULL,
            message_id TEXT NOT NULL,
            chain BLOB NOT NULL
        );
        CREATE INDEX archive_time ON archive(archived);
        CREATE INDEX archive_account ON archive(account, archived);
        CREATE TRIGGER archive_blob_ref AFTER INSERT ON archive BEGIN
            UPDATE blobs SET refs = refs + 1 WHERE id = NEW.blob_id;
        END;
        CREATE TRIGGER archive_blob_unref AFTER DELETE ON archive BEGIN
            UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
        END;
        CREATE TABLE archive_anchor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            chain BLOB NOT NULL
        );
        """,
    )


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_core", _m001_core),
    ("002_outbound", _m002_outbound),
    ("003_imap", _m003_imap),
    ("004_crm", _m004_crm),
    ("005_spam_tokens", _m005_spam_tokens),
    ("006_lifecycle_quota", _m006_lifecycle_quota),
    ("007_crm_folders", _m007_crm_folders),
    ("008_quota_messages_activity", _m008_quota_messages_activity),
    ("009_imap_savedate", _m009_imap_savedate),
    ("010_crm_thread_links", _m010_crm_thread_links),
    ("012_blob_id_floor", _m012_blob_id_floor),
    ("013_spam_tokenizer", _m013_spam_tokenizer),
    ("014_spam_views", _m014_spam_views),
    ("015_spam_senders", _m015_spam_senders),
    ("016_spam_rebuilt", _m016_spam_rebuilt),
    ("017_imap_subscriptions", _m017_imap_subscriptions),
    ("018_imap_internaldate_zone", _m018_imap_internaldate_zone),
    ("019_queue_dsn", _m019_queue_dsn),
    ("020_mta_sts_policies", _m020_mta_sts_policies),
    ("021_sieve_user_scripts", _m021_sieve_user_scripts),
    ("022_sieve_vacation", _m022_sieve_vacation),
    ("023_reports", _m023_reports),
    ("024_carddav_sync", _m024_carddav_sync),
    ("025_crm_thread_ids", _m025_crm_thread_ids),
    ("026_imap_acl", _m026_imap_acl),
    ("027_crm_followups", _m027_crm_followups),
    ("028_tlsrpt_results", _m028_tlsrpt_results),
    ("030_forwarding", _m030_forwarding),
    ("031_app_passwords", _m031_app_passwords),
    ("032_dane", _m032_dane),
    ("033_carddav_write", _m033_carddav_write),
    ("034_totp", _m034_totp),
    ("035_search_index", _m035_search_index),
    ("036_greylist", _m036_greylist),
    ("037_autoreply", _m037_autoreply),
    ("038_autoforward", _m038_autoforward),
    ("039_page_filters", _m039_page_filters),
    ("040_junk_digests", _m040_junk_digests),
    ("041_imap_imports", _m041_imap_imports),
    ("042_imap_import_jobs", _m042_imap_import_jobs),
    ("043_domain_footers", _m043_domain_footers),
    ("044_archive", _m044_archive),
]


def applied(conn: sqlite3.Connection) -> set[str]:
    """Names of the migrations this database has."""
    db = sqlite_utils.Database(conn)
    if not db["_migrations"].exists():
        return set()
    return {row["name"] for row in db["_migrations"].rows}


def apply(conn: sqlite3.Connection) -> list[str]:
    """Apply every pending migration, each in its own transaction; returns the names applied."""
    db = sqlite_utils.Database(conn)
    if not db["_migrations"].exists():
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    done = applied(conn)
    ran = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if name in applied(conn):  # another process migrated while we waited for the lock
                conn.execute("ROLLBACK")
                continue
            migration(conn)
            conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        ran.append(name)
    return ran
