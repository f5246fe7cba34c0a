"""CRM sorter: contacts, companies, threads and filing rules."""
