"""The account lifecycle (issue 7): termination, retention and purging, activity, announcements.

One concern per module: :mod:`.retention` (terminate, purge, the daily job), :mod:`.activity` (login history and
per-day counters), :mod:`.announce` (one message into every INBOX, stored once).
"""
