"""cellbus accounts service (users, worksheets, cells); built by the accounts issue."""
