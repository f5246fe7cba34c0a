"""Authentication: password hashing, login throttling and login history."""
