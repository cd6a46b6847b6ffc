"""cellbus web service (JSON-RPC API and feed relay); built by the web service issue."""
