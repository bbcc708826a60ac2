"""Storage: the SQL model, the engine, the upserts that join facts, and the reads."""
