"""Jobs on the database beside intake: rebuilding state from the inbox, retention."""
