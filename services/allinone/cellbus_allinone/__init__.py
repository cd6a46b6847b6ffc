"""cellbus in one program."""
