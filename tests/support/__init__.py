"""What the tests share: the app's callers, databases, servers, payloads and the oracle."""
