"""cellbus command-line client."""
