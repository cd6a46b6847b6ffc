"""cellbus kernel worker."""
