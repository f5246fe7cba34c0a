"""ManageSieve (RFC 5804): users manage their own Sieve scripts (relentad.crm.userscripts) from their clients."""
