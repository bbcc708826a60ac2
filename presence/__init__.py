"""presence: who is online, on which devices, and which messages were delivered and read."""
