"""The account pages on the HTTPS listener (``/account/``): a user's own usage, logins, activity, password and
export, behind the same HTTP Basic login as CardDAV."""
