"""Running carteiro for real: the server's lock and state file, logging, health, backups."""
